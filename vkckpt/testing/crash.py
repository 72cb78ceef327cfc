"""Crash suite: SIGKILL a vkckpt that freezes in a loop, at random moments, many times.

After every kill the image at the path is the last good one (it verifies, thaws and runs to
the workload's end), and once the next writer has started up no temporary file of a dead
run is left in the directory.  Writers alternate between O_TMPFILE images (a kill leaves
nothing) and named hidden temp files (a kill leaves one for the next start-up to reclaim).

    python -m vkckpt.testing.crash --kills 1000      (what `make crashtest` runs)
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.host import fs as hostfs
from vkckpt.image import ImageReader
from vkckpt.testing.workload import make_root

#: Started like `vkckpt run -o IMAGE`: the image directory is pinned (and dead runs' temp
#: files reclaimed) before anything else; "up" is printed then, "img" after each image.
WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from vkckpt.ckpt.snapshot import write_image
    from vkckpt.host.fs import OutputPath
    from vkckpt.runner import boot
    from vkckpt.testing.workload import Workload
    root, image = Path(sys.argv[1]), sys.argv[2]
    out = OutputPath(image)
    print("up", flush=True)
    k = boot(Workload("pthreads").config(root, []))
    at = 0
    while True:
        at += 40000
        if k.run(until_ticks=at) is not None:
            k = boot(Workload("pthreads").config(root, []))
            at = 0
            continue
        write_image(k, image, codec="zstd", dir_fd=out.dir_fd)
        print("img", flush=True)
""")


@dataclass
class CrashReport:
    kills: int = 0
    mid_write: int = 0           # kills that left a named temp file behind (caught writing)
    reclaimed: int = 0           # temp files the next start-up removed
    checks: int = 0              # verify + thaw + run of the image after a kill
    failures: list[str] = field(default_factory=list)


def _dead_temps(directory: Path) -> list[str]:
    return [n for n in os.listdir(directory) if hostfs.is_reserved(n)]


def _check_image(image: Path, status: int) -> str | None:
    """None if the image verifies, thaws and runs to `status`; else what went wrong."""
    try:
        ImageReader(image).verify()
        k = thaw(str(image), ThawOptions(stdout=lambda b: None, stderr=lambda b: None))
        got = k.run()
        k.shutdown()
    except Exception as e:  # noqa: BLE001 - reported as a failure of this kill
        return f"{type(e).__name__}: {e}"
    return None if got == status else f"thawed run ended with {got}, not {status}"


def crash(kills: int, workdir: Path | None = None, seed: int = 1234,
          log=lambda s: None) -> CrashReport:  # noqa: ANN001
    """Kill `kills` writers; every check after every kill goes into the report."""
    base = workdir or Path(tempfile.mkdtemp(prefix="vkckpt-crash-"))
    base.mkdir(parents=True, exist_ok=True)
    root = make_root(base, ["pthreads"])
    imgs = base / "imgs"
    imgs.mkdir(exist_ok=True)
    image = imgs / "live.img"
    rng = random.Random(seed)
    rep = CrashReport()
    have_image = False
    while rep.kills < kills:
        env = {**os.environ, "VKCKPT_TMPFILE": "1" if rep.kills % 2 else "0"}
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(image)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            line = p.stdout.readline()
            if line != b"up\n":
                rep.failures.append(f"writer did not start: {p.stderr.read()[-500:]!r}")
                return rep
            left = [n for n in _dead_temps(imgs) if f".{p.pid}." not in n]
            if left:  # the start-up reclaim of this writer must have removed them all
                rep.failures.append(f"kill {rep.kills}: left after start-up: {left}")
            if not have_image:  # the first kill waits for a first image
                have_image = p.stdout.readline() == b"img\n"
            time.sleep(rng.uniform(0.0, 0.25))
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
            p.stdout.close()
            p.stderr.close()
        rep.kills += 1
        stale = _dead_temps(imgs)
        rep.mid_write += bool(stale)
        rep.reclaimed += len(stale)
        problem = _check_image(image, 0) if have_image else None
        rep.checks += have_image
        if problem:
            rep.failures.append(f"kill {rep.kills}: {problem}")
        if rep.kills % 50 == 0:
            log(f"{rep.kills} kills, {rep.mid_write} mid-write, {len(rep.failures)} failures")
    fd = hostfs.open_dir(imgs)  # one more start-up after the last kill
    hostfs.reclaim_temps(fd)
    os.close(fd)
    if _dead_temps(imgs):
        rep.failures.append(f"left after the last start-up: {_dead_temps(imgs)}")
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vkckpt.testing.crash", description=__doc__)
    ap.add_argument("--kills", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--workdir", type=Path)
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    rep = crash(a.kills, a.workdir, a.seed,
                log=lambda s: print(f"crashtest: {s}", file=sys.stderr, flush=True))
    print(f"crashtest: {rep.kills} kills ({rep.mid_write} mid-write), {rep.checks} "
          f"verify+thaw+run checks, {rep.reclaimed} temp files reclaimed, "
          f"{len(rep.failures)} failures, {time.monotonic() - t0:.0f} s")
    for f in rep.failures:
        print(f"crashtest: FAIL {f}")
    return 1 if rep.failures else 0


if __name__ == "__main__":
    sys.exit(main())
