"""Soak: one mixed vkernel frozen and thawed many times in a chain, every link compared with
the golden run, and the host process's memory watched for growth.

    python -m vkckpt.testing.soak --iterations 1000      (what `make soak` runs)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vkckpt.ckpt.snapshot import write_image
from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.kernel import VKernel
from vkckpt.runner import boot
from vkckpt.testing.digest import state_digest
from vkckpt.testing.oracle import thaw_in_process
from vkckpt.testing.workload import make_root

MIXED = ["compute", "pthreads", "forkpipe"]


def mixed_config(root: Path, out: list[bytes]) -> KernelConfig:
    """pid 1 computes for long; threads and fork/pipe/wait processes run beside it."""
    return KernelConfig(root=str(root), quantum=997, stdout=out.append, stderr=out.append,
                        processes=[ProcessSpec("/compute", ["compute", "3"]),
                                   ProcessSpec("/pthreads", ["pthreads"]),
                                   ProcessSpec("/forkpipe", ["forkpipe"])])


def rss_bytes() -> int:
    """Resident memory of this host process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class SoakResult:
    iterations: int
    mismatches: list[int]
    rss_start: int
    rss_end: int
    final_output_ok: bool


def soak(iterations: int, step: int = 3001, workdir: Path | None = None,
         log=lambda s: None) -> SoakResult:  # noqa: ANN001
    """Freeze, thaw (in-process, a fresh kernel each time) and compare, `iterations` times."""
    base = workdir or Path(tempfile.mkdtemp(prefix="vkckpt-soak-"))
    root = make_root(base, MIXED)
    gout: list[bytes] = []
    golden = boot(mixed_config(root, gout))
    out: list[bytes] = []
    k: VKernel = boot(mixed_config(root, out))  # same root: the image records its path
    image = base / "soak.img"
    mismatches: list[int] = []
    rss_start = 0
    for i in range(iterations):
        at = (i + 1) * step
        if golden.run(until_ticks=at) is not None:
            break
        want = state_digest(golden, base)
        if k.run(until_ticks=at) is not None:
            mismatches.append(i)
            break
        write_image(k, str(image))
        k.shutdown()
        k = thaw_in_process(image, out)
        if state_digest(k, base) != want or k.sched.ticks != golden.sched.ticks:
            mismatches.append(i)
        if i == min(9, iterations - 1):
            rss_start = rss_bytes()
        if i % 50 == 0:
            log(f"iteration {i}: tick {at}, rss {rss_bytes() >> 20} MiB")
    golden_status = golden.run()
    status = k.run()
    ok = status == golden_status and b"".join(out) == b"".join(gout)
    return SoakResult(i + 1, mismatches, rss_start, rss_bytes(), ok)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vkckpt.testing.soak",
                                 description="Freeze/thaw one mixed vkernel many times.")
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--step", type=int, default=3001, help="ticks between freezes")
    a = ap.parse_args(argv)
    r = soak(a.iterations, a.step, log=lambda s: print(s, file=sys.stderr))
    grow = (r.rss_end - r.rss_start) >> 20
    print(f"iterations={r.iterations} mismatches={len(r.mismatches)} "
          f"final_output_ok={r.final_output_ok} rss_growth={grow}MiB")
    return 0 if not r.mismatches and r.final_output_ok and grow < 64 else 1


if __name__ == "__main__":
    sys.exit(main())
