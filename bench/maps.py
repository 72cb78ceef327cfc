"""Issue 11, attack 8: many mmap + mprotect calls, and how their cost grows.

The limits guest makes N mappings of 2 pages and mprotects each, either whole (the
protection of one engine region changes) or its first page (a split: one more region).
Each mapping with a protection is a Unicorn memory region, and adding a region costs time
proportional to the square of the regions already there (Unicorn's RAM block allocator), so
the growth ratio t(2N) / t(N) is reported: 2 would be linear.
"""

from __future__ import annotations

import time

from bench.common import Console, Guests, Profile, Result, config
from vkckpt.runner import boot


def _seconds(g: Guests, n: int, whole: bool) -> float:
    out = Console()
    k = boot(config(g, "limits", ["maps", str(n)] + (["whole"] if whole else []), out))
    t0 = time.perf_counter()
    status = k.run()
    secs = time.perf_counter() - t0
    k.shutdown()
    if status != 0 or b"maps: ok" not in b"".join(out.chunks):
        raise RuntimeError(f"limits maps {n} failed: {b''.join(out.chunks)[-300:]!r}")
    return secs


def run(p: Profile, g: Guests) -> Result:
    n = p.maps
    r = Result("maps", f"limits maps: {n} and {2 * n} x (mmap 2 pages + mprotect)")
    for whole, label in ((True, "whole"), (False, "split")):
        a = r.add(f"{label}_{n}_s", _seconds(g, n, whole), "s")
        b = r.add(f"{label}_{2 * n}_s", _seconds(g, 2 * n, whole), "s")
        r.add(f"{label}_growth_ratio", b / a if a else 0.0, "x")
    r.notes.append("growth ratio t(2N)/t(N): 2 is linear; Unicorn's region allocator is not")
    return r
