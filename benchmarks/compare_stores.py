"""Compare two folders of stores: every array (values, dtype, shape, attributes) and the group
attributes. ``python benchmarks/compare_stores.py BEFORE_DIR AFTER_DIR``: proves that a change of
the store layout (sharding, partitions) kept every stored value of e.g. the default world."""
import sys
import numpy as np
import zarr
from pathlib import Path
a, b = Path(sys.argv[1]), Path(sys.argv[2])
ok = True
for store in sorted(p.name for p in a.glob("*.zarr")):
    x, y = zarr.open_group(str(a / store), mode="r"), zarr.open_group(str(b / store), mode="r")
    names = sorted(x.array_keys())
    same = names == sorted(y.array_keys())
    for n in names:
        u, v = x[n][:], y[n][:]
        eq = u.dtype == v.dtype and u.shape == v.shape and np.array_equal(u, v, equal_nan=u.dtype.kind == "f")
        eq = eq and dict(x[n].attrs) == dict(y[n].attrs)
        same &= eq
        if not eq:
            print("DIFF", store, n)
    ax, ay = x.attrs.asdict(), y.attrs.asdict()
    same &= ax == ay
    if ax != ay:
        print("ATTR DIFF", store, {k for k in ax if ax.get(k) != ay.get(k)})
    print(store, len(names), "arrays", "identical" if same else "DIFFERENT", "shards:", y["s2"].shards)
    ok &= same
print("ALL IDENTICAL" if ok else "DIFFERENCES")
