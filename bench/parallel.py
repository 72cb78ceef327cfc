"""Deterministic parallelism: two compute-bound processes on one host thread versus two.

The guest is `compute_fork 2 SCALE`: pid 1 forks two workers from one state and waits; both
run the compute loop (the same translated blocks) with no system call while they work, so
every round of the run is two parallel slices (vkckpt/rounds.py).  Both sides run in this
process, interleaved (medians), and must agree on output, ticks and the digest of an image
frozen half-way; `identical` says they do.

`host_ceiling` is what this host gives two Unicorn engines at once at this moment: one bare
`emu_start` loop on one thread versus the same loop on two threads (2 x t1 / t2).  On a
machine whose two CPUs are busy or share a core it is well below 2, and no scheduler can
beat it; `of_ceiling` is the speedup as a fraction of it.  (The loop engines get the
engines' 8 MiB translation buffer: with Unicorn's default 1 GiB one, every engine but the
first ran this loop 2.5x slower, alone as well, which would read as contention.)
"""

from __future__ import annotations

import ctypes
import tempfile
import threading
import time
from pathlib import Path

from bench.common import Console, Guests, Profile, Result, config, median_pair
from vkckpt.engine.engine import TCG_BUFFER
from vkckpt.runner import boot
from vkckpt.testing.digest import state_digest

TARGET = 1.7
QUANTUM = 50_000
#: A long quantum, to show what the per-round cost of handing phase 2 to host threads is
BIG = 1_000_000
#: mov rcx, 1e8; dec rcx; jnz (back); nop
_LOOP = bytes.fromhex("48c7c100e1f505" "48ffc9" "75fb" "90")


def _one(g: Guests, args: list[str], cpus: int, seen: dict[int, tuple],
         quantum: int = QUANTUM) -> float:
    out = Console()
    k = boot(config(g, "compute_fork", args, out, quantum=quantum, cpus=cpus))
    t0 = time.perf_counter()
    status = k.run()
    secs = time.perf_counter() - t0
    seen[cpus] = (status, out.text, k.sched.ticks, dict(k.statuses))
    k.shutdown()
    if status != 0:
        raise RuntimeError(f"compute_fork {args} exited with status {status}")
    return secs


def _digest_half_way(g: Guests, args: list[str], cpus: int, ticks: int) -> str:
    k = boot(config(g, "compute_fork", args, Console(), quantum=QUANTUM, cpus=cpus))
    k.run(until_ticks=ticks // 2)
    with tempfile.TemporaryDirectory() as d:
        digest = state_digest(k, Path(d))
    k.shutdown()
    return digest


def host_ceiling(repeat: int) -> float:
    """2 x (one bare engine loop on one thread) / (two loops on two threads), median."""
    from vkckpt.engine import libuc

    engines = []
    for _ in range(2):
        h = libuc.open_x86_64()
        libuc.set_tcg_buffer_size(h, TCG_BUFFER)  # as engines have: equal speeds (see below)
        buf = ctypes.create_string_buffer(_LOOP, 0x1000)
        libuc.check(libuc.lib.uc_mem_map_ptr(h, 0x10000, 0x1000, 7, ctypes.addressof(buf)))
        engines.append((h, buf))

    def loops(n: int) -> float:
        def go(h: int) -> None:
            libuc.check(libuc.lib.uc_emu_start(h, 0x10000, 0x10000 + len(_LOOP) - 1, 0, 0))
        ths = [threading.Thread(target=go, args=(engines[i][0],)) for i in range(n)]
        t0 = time.perf_counter()
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        return time.perf_counter() - t0

    one, two = median_pair(max(3, repeat), lambda: loops(1), lambda: loops(2))
    for h, _ in engines:
        libuc.lib.uc_close(h)
    return 2 * one / two


def run(p: Profile, g: Guests) -> Result:
    r = Result("parallel", "two compute-bound processes: 1 host thread vs 2, bit-identical")
    args = ["2", str(4 * p.compute_scale)]
    seen: dict[int, tuple] = {}
    serial, parallel = median_pair(p.repeat, lambda: _one(g, args, 1, seen),
                                   lambda: _one(g, args, 2, seen))
    ticks = seen[1][2]
    same = seen[1] == seen[2] and \
        _digest_half_way(g, args, 1, ticks) == _digest_half_way(g, args, 2, ticks)
    big: dict[int, tuple] = {}
    serial_big, parallel_big = median_pair(p.repeat, lambda: _one(g, args, 1, big, BIG),
                                           lambda: _one(g, args, 2, big, BIG))
    same = same and big[1] == big[2]
    ceiling = host_ceiling(p.repeat)
    r.add("serial_s", serial, "s")
    r.add("parallel_s", parallel, "s")
    r.add("speedup", serial / parallel, "x")
    r.target("speedup", ">=", TARGET)
    r.add("identical", float(same), "bool")
    r.target("identical", ">=", 1)
    r.add(f"speedup_q{BIG // 1000}k", serial_big / parallel_big, "x")
    r.add("host_ceiling", ceiling, "x")
    r.add("of_ceiling", serial / parallel / ceiling, "")
    r.add("ticks", ticks, "blocks")
    r.notes.append(f"compute_fork {' '.join(args)}, quantum {QUANTUM}; identical = output, "
                   "ticks, statuses and a half-way image digest agree; speedup_q1000k: "
                   f"the same at quantum {BIG} (fewer rounds, so less hand-off cost)")
    return r
