"""Cleaning half of OpenAI CLIP's simple_tokenizer, with Python's own functions, for the C++ test.

simple_tokenizer cleans with ftfy.fix_text (out of scope for zsad), html.unescape twice,
re.sub(r'\\s+', ' ') + strip, and str.lower. This script prints JSON lines {"text", "clean"} for
HTML references (the named subset zsad supports, numeric ones, malformed ones), every Unicode
whitespace character and every code point that str.lower changes. The test then checks that the
C++ tokenizer gives `text` the same ids as the already-clean `clean`.
"""
import html
import html.entities
import json
import re
import sys


def clean(text):
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r'\s+', ' ', text).strip().lower()


html5 = html.entities.html5
legacy = sorted(k for k in html5 if not k.endswith(';'))
named = sorted(set(html.entities.name2codepoint) | {'apos'} | set(legacy))

cases = []
for name in named:
    cases += [f'&{name};', f'x &{name}; y', f'a&{name};b']
for name in legacy:
    # Without semicolon, and followed by text: Python falls back to the longest legacy prefix.
    for tail in ('', 'b', 'x;', 'é'):
        if tail and (name + tail) in html5:  # a full HTML5-only name, outside zsad's subset
            continue
        cases.append(f'&{name}{tail} z')
cases += [
    '&amp;lt;b&amp;gt;', '&amp;quot;hi&amp;quot;', '&ampamp;', '&amp', '&AMP;', '&copy2024 acme',
    '&notit;', '&noti', '&' + 'a' * 40 + ';', '&amp' + 'x' * 40, '& amp;', '&;', '&#;', '&#x;', '&#xg;',
    '&unknown; entity', '&#65;&#66&#x43;&#X44;&#x45', '&#0;', '&#13;x', '&#128;', '&#129;', '&#150;',
    '&#x9F;', '&#127;', '&#1;', '&#11;', '&#xD800;', '&#xDFFF;', '&#x110000;', '&#99999999999999999999;',
    '&#xFDD0;', '&#xFFFE;', '&#x1FFFF;', '&#x10FFFF;', '&#x1F642;', '&#65abc', '&#x41g', '&#0x41',
    '&#32;&#9;spaces&#10;', '&#x26;amp;', '&#38;lt;', '&lang;x&rang;', 'tab&#9;in', '&nbsp;nbsp&nbsp;',
]
# Every whitespace character (str.isspace: bidi WS/B/S or category Zs), and a few look-alikes
# that are not whitespace.
for c in range(0x110000):
    if chr(c).isspace():
        cases.append(f'a{chr(c)}b{chr(c)}{chr(c)}c')
cases += ['a\u200bb', 'a\u180eb', 'a\ufeffb', 'a\u2060b']
# Every code point str.lower changes, in words of 8 (also exercises final sigma and
# one-to-many lower-casing such as U+0130), plus some words with context-dependent forms.
changed = [chr(c) for c in range(0x110000) if chr(c).lower() != chr(c)]
for i in range(0, len(changed), 8):
    cases.append(''.join(changed[i:i + 8]) + ' ' + ' '.join(changed[i:i + 8]))
cases += ['ΟΔΥΣΣΕΥΣ', 'ΣΑΣ ΣΑΣ.', 'Σ', 'ΑΣ.Σ', 'İstanbul', 'ǄUNGLA ǅungla', 'ẞ STRASSE', 'Ⅻ Ⓐ', 'ＦＵＬＬ']

out = 0
for text in cases:
    expected = clean(text)
    if clean(expected) != expected:  # a third unescape or lower would change it: not comparable
        continue
    print(json.dumps({'text': text, 'clean': expected}))
    out += 1
print(f'{out} cases', file=sys.stderr)
