"""Reference job order of Hydra's BasicSweeper: itertools.product over the parameter lists
(in parameter order), so the last parameter varies fastest and job numbers count up from 0.

usage: sweep_order_ref.py '[["k1=1","k1=2"],["k2=x","k2=y","k2=z"]]'  -> JSON list of job override lists
"""
import itertools
import json
import sys

params = json.loads(sys.argv[1])
print(json.dumps([list(job) for job in itertools.product(*params)]))
