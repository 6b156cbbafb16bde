"""Cross-check a YAML file printed by zsad against the config tree it came from.

usage: yaml_crosscheck.py PRINTED.yaml TREE.json
TREE.json is zsad's own tree as JSON (non-finite floats as {"__float__": "nan"|"inf"|"-inf"}).
PyYAML (a YAML 1.1 reader, what Python aggregation scripts use) must read the printed text as the
same data: same types, same values, same key order. Prints "ok" or exits 1 with the first difference.
"""
import json
import math
import sys

import yaml


def decode(v):
    if isinstance(v, dict):
        if set(v) == {"__float__"}:
            return float(v["__float__"])
        return {k: decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [decode(x) for x in v]
    return v


def same(a, b, path):
    if isinstance(a, bool) or isinstance(b, bool):
        if type(a) is not type(b) or a != b:
            return f"{path}: {a!r} != {b!r}"
        return None
    if isinstance(a, float) or isinstance(b, float):
        if not (isinstance(a, float) and isinstance(b, float)):
            return f"{path}: type {type(a).__name__} != {type(b).__name__} ({a!r} vs {b!r})"
        if math.isnan(a) and math.isnan(b):
            return None
        return None if a == b else f"{path}: {a!r} != {b!r}"
    if type(a) is not type(b):
        return f"{path}: type {type(a).__name__} != {type(b).__name__} ({a!r} vs {b!r})"
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{path}: keys {list(a)} != {list(b)}"
        for k in a:
            d = same(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = same(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


with open(sys.argv[1]) as f:
    printed = yaml.safe_load(f)
with open(sys.argv[2]) as f:
    tree = decode(json.load(f))
diff = same(printed, tree, "$")
if diff:
    print(diff)
    sys.exit(1)
print("ok")
