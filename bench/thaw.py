"""Target 5: thawing a large (256 MiB) and a small (< 4 MiB) image in a fresh host process,
and thaw cost against image size (issue 13).

Each thaw runs `python -m bench.thaw_probe` (a new interpreter), which times the library
import, the thaw and the first time slice itself.  Interpreter start-up is measured apart, as
the wall time of `python -c pass`; `total_s` is the probe's wall time from spawn to exit.

`first_insn_<N>MiB_s` is the time from calling thaw() to the end of a first time slice of
one block (the probe's `first-block`), on an image of N MiB of touched memory (memtouch,
frozen at its first pause): the time to the first guest instruction, its page faults
included, the library import not.  Sizes are thawed interleaved, lazily (the default above
4 MiB), then eagerly (VKCKPT_THAW=eager, as before lazy thaw; apart, because an eager thaw
reads the whole image and evicts the page cache the lazy one reads its chunk heads from);
the target is the lazy 1 GiB / 16 MiB ratio.  A lazy thaw still reads one small piece per
1 MiB page chunk (the format has no index): from a cold page cache, a random read per MiB.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Console, Guests, Profile, Result, config, mb, run_until_lines
from vkckpt.ckpt.snapshot import write_image
from vkckpt.runner import boot

LARGE_TARGET = 0.5   # thaw + first slice, seconds
SIZE_RATIO_TARGET = 2.0  # first_insn of the largest image / of the 16 MiB one
SMALL_TARGET = 0.05  # whole process: interpreter + import + thaw + first slice, seconds
SMALL_LIMIT = 4 << 20
REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    """The probes' environment: bytecode caching on, as in any installed Python package
    (with PYTHONDONTWRITEBYTECODE every module would be compiled again at each start)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = str(REPO)  # the probe runs as a script, from any install state
    return env


def _probe(image: Path, root: Path, *extra: str, **env: str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "thaw_probe.py"), str(image),
                           str(root), *extra], capture_output=True, text=True, timeout=600,
                          env={**_env(), **env})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"thaw probe failed: {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["total_s"] = wall
    return out


def _interpreter() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=_env())
    return time.perf_counter() - t0


_DLOPEN = ("import ctypes, os, sys, time\n"
           "path = next(p for e in sys.path if os.path.exists("
           "p := os.path.join(e or '.', 'unicorn', 'lib', 'libunicorn.so.2')))\n"
           "t = time.perf_counter(); ctypes.CDLL(path); print(time.perf_counter() - t)\n")


def _dlopen() -> float:
    """Loading libunicorn.so alone (relocations of a 24 MB library): a floor of every thaw."""
    out = subprocess.run([sys.executable, "-c", _DLOPEN], check=True, env=_env(),
                         capture_output=True, text=True).stdout
    return float(out.split()[-1])


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def small_image(g: Guests) -> Path:
    out = Console()
    k = boot(config(g, "compute", ["4"], out))
    k.run(until_ticks=1_000_000)
    path = g.path("small.img")
    write_image(k, str(path))
    k.shutdown()
    return path


def sized_image(g: Guests, touch_mb: int) -> Path:
    """A full image of memtouch with touch_mb MiB mapped and touched, at its first pause."""
    out = Console()
    k = boot(config(g, "memtouch", [str(touch_mb), str(touch_mb), "2", "10"], out))
    run_until_lines(k, out, 1)
    path = g.path(f"touch{touch_mb}.img")
    write_image(k, str(path))
    k.shutdown()
    return path


def _by_size(p: Profile, g: Guests, r: Result) -> None:
    """first_insn_<N>MiB_s, lazy and eager, for 16 MiB up to the profile's mapped size."""
    sizes = sorted({16, min(256, p.map_mb), p.map_mb})
    images = {n: sized_image(g, n) for n in sizes}
    rows: dict[tuple[int, str], list[float]] = {}
    for mode in ("lazy", "eager"):  # apart: eager thaws read (and evict) whole images
        for n in sizes:  # warm-up: page cache, bytecode
            _probe(images[n], g.root, "first-block", VKCKPT_THAW=mode)
        for _ in range(max(5, p.repeat)):
            for n in sizes:  # sizes interleaved
                got = _probe(images[n], g.root, "first-block", VKCKPT_THAW=mode)
                rows.setdefault((n, mode), []).append(got["thaw_s"] + got["slice_s"])
    for (n, mode), vals in sorted(rows.items()):
        suffix = "" if mode == "lazy" else "_eager"
        r.add(f"first_insn_{n}MiB{suffix}_s", statistics.median(vals), "s")
    big = sizes[-1]
    for suffix in ("", "_eager"):
        ratio = r.metrics[f"first_insn_{big}MiB{suffix}_s"] / \
            r.metrics[f"first_insn_16MiB{suffix}_s"]
        r.add(f"first_insn_ratio_{big}MiB_to_16MiB{suffix}", ratio, "x")
    r.target(f"first_insn_ratio_{big}MiB_to_16MiB", "<=", SIZE_RATIO_TARGET)
    r.notes.append("first_insn_<N>MiB_s = thaw() + a first slice of one block, N MiB memtouch "
                   "image, fresh process (import apart); _eager: VKCKPT_THAW=eager")
    for n in sizes:
        images[n].unlink()


def run(p: Profile, g: Guests) -> Result:
    r = Result("thaw", "thaw in a fresh process")
    repeat = max(3, p.repeat)
    small = small_image(g)
    r.add("small_image_MB", mb(small.stat().st_size), "MB")
    if small.stat().st_size >= SMALL_LIMIT:
        r.notes.append("the small image is not below 4 MiB")
    _probe(small, g.root)  # warm-up: writes the bytecode caches, fills the page cache
    interp = [_interpreter() for _ in range(repeat)]
    rows = [_probe(small, g.root) for _ in range(repeat)]
    r.add("interpreter_s", statistics.median(interp), "s")
    r.add("libunicorn_dlopen_s", statistics.median(_dlopen() for _ in range(repeat)), "s")
    r.add("small_import_s", _median(rows, "import_s"), "s")
    r.add("small_thaw_s", _median(rows, "thaw_s"), "s")
    r.add("small_slice_s", _median(rows, "slice_s"), "s")
    r.add("small_library_s", _median(rows, "import_s") + _median(rows, "thaw_s")
          + _median(rows, "slice_s"), "s")
    r.add("small_total_s", _median(rows, "total_s"), "s")
    r.target("small_total_s", "<=", SMALL_TARGET)
    r.notes.append("small_library_s = import + thaw + first slice (interpreter start-up apart);"
                   " the import includes libunicorn_dlopen_s")

    large = g.artifacts.get("large_image")
    if large is None or not large.exists():
        from bench import freeze

        freeze.run(p, g)
        large = g.artifacts["large_image"]
    r.add("large_image_MB", mb(large.stat().st_size), "MB")
    rows = [_probe(large, g.root) for _ in range(p.repeat)]
    r.add("large_import_s", _median(rows, "import_s"), "s")
    r.add("large_thaw_s", _median(rows, "thaw_s"), "s")
    r.add("large_slice_s", _median(rows, "slice_s"), "s")
    r.add("large_running_s", _median(rows, "thaw_s") + _median(rows, "slice_s"), "s")
    r.add("large_total_s", _median(rows, "total_s"), "s")
    r.target("large_running_s", "<=", LARGE_TARGET)
    r.notes.append("large_running_s = thaw + first time slice (library import counted apart)")
    _by_size(p, g, r)
    return r
