"""Reads a qat checkpoint with h5py, prints its layout and verifies every dataset's crc32: the check
behind docs/CHECKPOINTS.md.

Usage: /tmp/qat-reference-venv/bin/python scripts/reference/read_checkpoint_h5py.py FILE.h5
"""
import json, sys, zlib
import h5py

with h5py.File(sys.argv[1], "r") as f:
    print("attributes of /:")
    for k, v in f.attrs.items():
        print(f"  {k} = {v!r}"[:160])
    print("metrics parsed:", json.loads(f.attrs["metrics"]))
    declared = f.attrs.get("checksum")
    checked = []
    for group in ["params", "buffers", "optimizer", "quant", "rng"]:
        g = f[group]
        print(f"/{group}: attrs {dict(g.attrs)}")
        def show(name, obj):
            if isinstance(obj, h5py.Dataset):
                print(f"  /{group}/{name} {obj.dtype} {obj.shape}")
                if "crc32" in obj.attrs:
                    data = obj[()]
                    crc = zlib.crc32(data.astype(data.dtype.newbyteorder("<")).tobytes())
                    assert crc == int(obj.attrs["crc32"]), f"/{group}/{name}: crc32 mismatch"
                    checked.append(name)
                else:
                    assert declared is None, f"/{group}/{name} has no crc32 though / declares {declared}"
        g.visititems(show)
    print(f"checksum {declared!r}: {len(checked)} datasets verified with zlib.crc32")
    w = f["params"]["0.weight"][()]
    print("params/0.weight[0,0,0] =", w[0, 0, 0])
