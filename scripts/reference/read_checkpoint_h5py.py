"""Reads a qat checkpoint with h5py and prints its layout: the check behind docs/CHECKPOINTS.md.

Usage: $(../shared/tools/reference/setup.sh)/bin/python scripts/reference/read_checkpoint_h5py.py FILE.h5
"""
import json, sys
import h5py

with h5py.File(sys.argv[1], "r") as f:
    print("attributes of /:")
    for k, v in f.attrs.items():
        print(f"  {k} = {v!r}"[:160])
    print("metrics parsed:", json.loads(f.attrs["metrics"]))
    for group in ["params", "buffers", "optimizer", "quant", "rng"]:
        g = f[group]
        print(f"/{group}: attrs {dict(g.attrs)}")
        def show(name, obj):
            if isinstance(obj, h5py.Dataset):
                print(f"  /{group}/{name} {obj.dtype} {obj.shape}")
        g.visititems(show)
    w = f["params"]["0.weight"][()]
    print("params/0.weight[0,0,0] =", w[0, 0, 0])
