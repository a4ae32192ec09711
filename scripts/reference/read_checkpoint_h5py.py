"""Reads a qat checkpoint with h5py, prints its layout and verifies the integrity trailer and every
dataset's crc32 with zlib: the check behind docs/CHECKPOINTS.md.

Usage: /tmp/qat-reference-venv/bin/python scripts/reference/read_checkpoint_h5py.py FILE.h5
"""
import json, struct, sys, zlib
import h5py

def check_trailer(path):
    """Verifies the integrity trailer (docs/CHECKPOINTS.md) with zlib; returns the number of data ranges."""
    raw = open(path, "rb").read()
    if raw[-8:] != b"QATTRLR1":
        return None
    n, image_length, meta_crc, table_crc = struct.unpack("<QQII", raw[-32:-8])
    table = raw[image_length:-8]
    assert len(table) == 16 * n + 24 and zlib.crc32(table[:-4]) == table_crc, "damaged trailer"
    ranges = [struct.unpack("<QQ", table[16 * k:16 * k + 16]) for k in range(n)]
    crc, at = 0, 0
    for offset, length in ranges + [(image_length, 0)]:
        crc = zlib.crc32(raw[at:offset], crc)
        at = offset + length
    assert crc == meta_crc, "damaged HDF5 metadata"
    return n


print("trailer:", check_trailer(sys.argv[1]), "data ranges, metadata crc32 verified with zlib")
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
