"""Run in a fresh interpreter: thaw an image, run one time slice, print timings as JSON.

Usage: ``python bench/thaw_probe.py IMAGE ROOT [first-block]``, run as a script the way a
console command starts (``-m`` would add runpy's imports).  Times are measured inside the
process, from the probe's first line: `import_s` (the library), `thaw_s`, `slice_s` (the
first time slice; with `first-block`, a slice of one block: the first guest instruction).
The result is one JSON line, formatted by hand so the probe imports nothing of its own.
The process ends with os._exit, so tearing the vkernel down is not measured.
"""

import time

T0 = time.perf_counter()

import os  # noqa: E402
import sys  # noqa: E402


def main() -> None:
    image, root = sys.argv[1], sys.argv[2]
    first_block = sys.argv[3:] == ["first-block"]
    from vkckpt.ckpt.restore import ThawOptions, thaw

    t1 = time.perf_counter()
    k = thaw(image, ThawOptions(root=root, stdout=lambda b: None, stderr=lambda b: None,
                                deliver_sigthaw=False))
    t2 = time.perf_counter()
    if first_block:
        k.sched.quantum = 1
    k.run(until_ticks=k.sched.ticks + 1)
    t3 = time.perf_counter()
    sys.stdout.write(f'{{"import_s": {t1 - T0!r}, "thaw_s": {t2 - t1!r}, '
                     f'"slice_s": {t3 - t2!r}, "ticks": {k.sched.ticks}}}\n')
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
