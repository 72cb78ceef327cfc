"""Write the thaw fixture for the current image format version into tests/data.

    python tests/data/make_fixtures.py            # add hello-v<MAJOR>.<MINOR>.img if missing
    python tests/data/make_fixtures.py --force    # rewrite it (only before that version ships)

The fixture is the `hello` guest frozen mid-run (quantum 101, so the run has several
scheduling points) into a zstd-compressed image, and beside it NAME.expected.yaml: what a thaw
must print and how it must end.  `vkckpt regress` thaws every tests/data/*.img that has an
expected file and compares.  See tests/data/README.md for the rule: fixtures of released
format versions are never rewritten or deleted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from vkckpt import __version__
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.snapshot import write_image
from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.guests.build import guest_path
from vkckpt.image import FORMAT_MAJOR, FORMAT_MINOR
from vkckpt.kernel import VKernel
from vkckpt.runner import boot

HERE = Path(__file__).resolve().parent
ARGV = ["hello", "fixture", f"format {FORMAT_MAJOR}.{FORMAT_MINOR}"]
ENV = {"HELLO_GREETING": "from an old image"}
QUANTUM = 101


def _config(root: Path, out: list[bytes]) -> KernelConfig:
    return KernelConfig(root=str(root), quantum=QUANTUM, stdout=out.append, stderr=out.append,
                        stdin=b"", processes=[ProcessSpec("/hello", list(ARGV), dict(ENV))])


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so the expected output reads as printed."""


_Dumper.add_representer(str, lambda d, s: d.represent_scalar(
    "tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def make(force: bool = False) -> Path:
    name = f"hello-v{FORMAT_MAJOR}.{FORMAT_MINOR}"
    image, expected = HERE / f"{name}.img", HERE / f"{name}.expected.yaml"
    if image.exists() and not force:
        print(f"{image.name} exists; fixtures of a released format are never rewritten "
              "(--force only before the version ships)", file=sys.stderr)
        return image
    with tempfile.TemporaryDirectory(prefix="vkckpt-fixture-") as tmp:
        root = Path(tmp) / "root"
        (root / "work").mkdir(parents=True)
        shutil.copy2(guest_path("hello"), root / "hello")
        gold_out: list[bytes] = []
        k = boot(_config(root, gold_out))
        points: list[int] = []

        def note(k: VKernel) -> bool:
            points.append(k.sched.ticks)
            return False
        status = k.run(on_schedule_point=note)
        inside = [p for p in points if 0 < p < k.sched.ticks]
        at = inside[len(inside) // 2]  # mid-run
        k.shutdown()
        before: list[bytes] = []
        k = boot(_config(root, before))
        assert k.run(until_ticks=at) is None
        write_image(k, str(image), codec="zstd")
        k.shutdown()
        empty = Path(tmp) / "empty"  # the image must not need anything from the root
        (empty / "work").mkdir(parents=True)
        after: list[bytes] = []
        k2 = thaw(str(image), ThawOptions(root=str(empty), stdout=after.append,
                                          stderr=after.append, stdin=b"",
                                          deliver_sigthaw=False))
        status2 = k2.run()
        if b"".join(before + after) != b"".join(gold_out) or status2 != status:
            raise SystemExit("the fixture does not thaw into the golden run's end; not written")
        doc = {
            "format": f"{FORMAT_MAJOR}.{FORMAT_MINOR}",
            "producer": f"vkckpt {__version__}",
            "guest": "hello", "argv": ARGV, "env": ENV, "quantum": QUANTUM,
            "frozen_at": at,
            "output_before": b"".join(before).decode(),
            "output": b"".join(after).decode(),
            "status": status2, "ticks": k2.sched.ticks,
            "statuses": dict(sorted(k2.statuses.items())),
        }
        k2.shutdown()
    expected.write_text("# Written by tests/data/make_fixtures.py: what thawing "
                        f"{image.name} must print (output) and how it must end.\n"
                        + yaml.dump(doc, Dumper=_Dumper, sort_keys=False))
    print(f"{image} ({image.stat().st_size} bytes), {expected.name}")
    return image


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="rewrite the current version's fixture")
    make(ap.parse_args().force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
