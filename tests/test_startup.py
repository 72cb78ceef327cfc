"""Start-up cost: thawing and running a guest imports none of the heavyweight modules.

bench/thaw.py measures the time; this test keeps the property that makes it small from
rotting: a fresh interpreter that thaws an image and runs it to the end must not have
imported the Unicorn binding or stdlib modules that cost milliseconds each to import.
"""

from __future__ import annotations

import subprocess
import sys

from vkckpt.ckpt.snapshot import write_image
from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.runner import boot

#: Modules a thaw-and-run must not import, with what each would cost (measured in bench/).
HEAVY = ("unicorn", "dataclasses", "inspect", "typing", "pathlib", "secrets", "yaml",
         "subprocess", "tempfile", "zstandard", "threading", "queue")

_PROBE = """
import sys
from vkckpt.ckpt.restore import ThawOptions, thaw
k = thaw(sys.argv[1], ThawOptions(root=sys.argv[2], stdout=lambda b: None,
                                  stderr=lambda b: None))
k.run()
heavy = sys.argv[3].split(",")
print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
"""


def test_thaw_and_run_import_nothing_heavy(make_root) -> None:
    root = make_root("pthreads")
    k = boot(KernelConfig(root=str(root), stdout=lambda b: None, stderr=lambda b: None,
                          processes=[ProcessSpec("/pthreads", ["pthreads"])]))
    k.run(until_ticks=200_000)
    assert k.exit_status is None, "the guest must still be running when frozen"
    img = root.parent / "small.img"
    write_image(k, str(img))
    k.shutdown()
    res = subprocess.run([sys.executable, "-c", _PROBE, str(img), str(root), ",".join(HEAVY)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]"
