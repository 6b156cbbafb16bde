"""Indices of torch.utils.data.DistributedSampler for every rank, as JSON (reference for
distributed_sampler_test.cpp). Usage: sampler_reference.py N REPLICAS SEED EPOCH SHUFFLE DROP_LAST"""
import json
import sys

from torch.utils.data import DistributedSampler

n, replicas, seed, epoch, shuffle, drop_last = (int(a) for a in sys.argv[1:7])
out = []
for rank in range(replicas):
    s = DistributedSampler(list(range(n)), num_replicas=replicas, rank=rank, shuffle=bool(shuffle), seed=seed,
                           drop_last=bool(drop_last))
    s.set_epoch(epoch)
    out.append(list(iter(s)))
print(json.dumps(out))
