"""Images are a pure function of the run: the same workload frozen at the same tick writes the
same bytes, across refactors of the code that writes them.

tests/data/golden_images.json holds SHA-256 digests of full and incremental images of bundled
guests, recorded before the architecture step of issue 12 (and regenerated only by a change
that means to alter the format: `python tests/test_golden_images.py --record`).  A failure
names the first record that differs.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from vkckpt.ckpt.chain import ImageChain
from vkckpt.ckpt.snapshot import write_image
from vkckpt.image import ImageReader
from vkckpt.testing.oracle import Workload, run_until
from vkckpt.testing.workload import make_root

DATA = Path(__file__).parent / "data" / "golden_images.json"

#: (workload, first freeze tick, second freeze tick): a full image, then an incremental one.
CASES = {
    "forkpipe": (Workload("forkpipe"), 16_000, 33_000),
    "pthreads": (Workload("pthreads"), 300_000, 700_000),
    "signals": (Workload("signals"), 2_500, 5_500),
    "pollpipes": (Workload("pollpipes"), 3_000, 6_000),
    "files": (Workload("files", ("work",)), 7_000, 14_000),
    "mmaps": (Workload("mmaps", ("work",)), 60_000, 120_000),
    "ckpt_signals": (Workload("ckpt_signals", ("4",)), 100_000, 250_000),
    "sigwait": (Workload("sigwait"), 2_000, 4_000),
}


def _record_digests(path: Path) -> list[str]:
    """One short digest per record (type:digest), to say where two images part."""
    out = []
    with ImageReader(path) as r:
        for rec in r.records():
            body = repr((rec.type, rec.version, rec.critical, rec.fields)).encode()
            out.append(f"{rec.type}:{hashlib.sha256(body).hexdigest()[:12]}")
    return out


def images_of(name: str, base: Path) -> dict[str, dict]:
    """The full and the incremental image of case `name`, as digests."""
    wl, first, second = CASES[name]
    root = make_root(base, [wl.name])
    k, _, status = run_until(wl, root, first)
    assert status is None, f"{name} ended before tick {first}"
    full = root / "full.img"
    chain = ImageChain()
    write_image(k, str(full), chain=chain)
    status = k.run(until_ticks=second)
    assert status is None, f"{name} ended before tick {second}"
    incr = root / "incr.img"
    write_image(k, str(incr), chain=chain, incremental=True)
    k.shutdown()
    return {tag: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                  "records": _record_digests(p)}
            for tag, p in (("full", full), ("incr", incr))}


@pytest.mark.parametrize("name", sorted(CASES))
def test_images_are_byte_identical_to_the_recorded_ones(name: str, tmp_path: Path) -> None:
    want = json.loads(DATA.read_text())[name]
    got = images_of(name, tmp_path)
    for tag in ("full", "incr"):
        if got[tag]["sha256"] == want[tag]["sha256"]:
            continue
        pairs = zip(want[tag]["records"], got[tag]["records"], strict=False)
        first = next((i for i, (a, b) in enumerate(pairs) if a != b),
                     min(len(want[tag]["records"]), len(got[tag]["records"])))
        pytest.fail(f"{name} {tag} image differs from the recorded one; first differing "
                    f"record #{first}: want {want[tag]['records'][first:first + 1]}, "
                    f"got {got[tag]['records'][first:first + 1]} (the pages follow the "
                    f"records; equal records mean the page data or framing differ)")


if __name__ == "__main__" and "--record" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        DATA.write_text(json.dumps({n: images_of(n, Path(d)) for n in sorted(CASES)},
                                   indent=1) + "\n")
    print(f"wrote {DATA}")
