"""The compatibility promise (vkckpt-image(5) COMPATIBILITY, tests/data/README.md): every
fixture in tests/data thaws and finishes exactly as its expected.yaml records, and every
format version this reader writes or has written has a fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.image import ImageReader
from vkckpt.image.header import FORMAT_MAJOR, FORMAT_MINOR

DATA = Path(__file__).parent / "data"
FIXTURES = sorted(p for p in DATA.glob("*.img") if p.with_suffix(".expected.yaml").exists())


def test_every_format_version_has_a_fixture() -> None:
    have = set()
    for p in FIXTURES:
        with ImageReader(p) as r:
            have.add((r.header.major, r.header.minor))
    assert have >= {(FORMAT_MAJOR, m) for m in range(FORMAT_MINOR + 1)}


@pytest.mark.parametrize("image", FIXTURES, ids=[p.name for p in FIXTURES])
def test_fixture_thaws_and_finishes_as_recorded(image: Path, tmp_path: Path) -> None:
    want = yaml.safe_load(image.with_suffix(".expected.yaml").read_text())
    with ImageReader(image) as r:
        assert f"{r.header.major}.{r.header.minor}" == want["format"]
        r.check_digests()
    root = tmp_path / "empty"
    root.mkdir()
    out: list[bytes] = []
    k = thaw(str(image), ThawOptions(root=str(root), stdout=out.append, stderr=out.append,
                                     stdin=b"", deliver_sigthaw=False))
    try:
        status = k.run()
        assert b"".join(out).decode() == want["output"]
        assert (status, k.sched.ticks) == (want["status"], want["ticks"])
        assert k.statuses == {int(a): int(b) for a, b in want["statuses"].items()}
    finally:
        k.shutdown()
