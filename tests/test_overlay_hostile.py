"""Crafted images of an overlay run: every inconsistent overlay record is refused with an
ImageError before the run starts, and nothing is created outside the layers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_overlay import chain_of_images, make_tree

from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.errors import ImageError
from vkckpt.testing.hostile_images import (
    OVERLAY_FIELD_CASES,
    load_records,
    set_field,
    write_records,
)


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list]:
    base = tmp_path_factory.mktemp("ovlseed")
    lower = make_tree(base / "lower")
    _, images = chain_of_images(lower, base, 1)
    src = images[0][0]
    return src, lower, load_records(src)


def _thaw(img: Path, root: Path) -> None:
    k = thaw(str(img), ThawOptions(root=str(root), deliver_sigthaw=False))
    k.shutdown()


def _index(recs: list, kind: str, which: str | None) -> int:
    if which is None:
        return 0
    hits = [r for r in recs if r[0] == kind]
    return next(i for i, r in enumerate(hits) if r[3]["kind"] == which)


@pytest.mark.parametrize(("kind", "field", "value", "which"), OVERLAY_FIELD_CASES,
                         ids=[f"{c[0]}.{c[1]}-{i}" for i, c in enumerate(OVERLAY_FIELD_CASES)])
def test_malicious_overlay_field_is_refused(seed, tmp_path: Path, kind: str, field: str,
                                            value: object, which: str | None) -> None:
    src, root, recs = seed
    bad = write_records(tmp_path / "bad.img", src,
                        set_field(recs, kind, field, value, _index(recs, kind, which)))
    with pytest.raises(ImageError):
        _thaw(bad, root)


def _entry(path: str, kind: str, target: str | None = None) -> list:
    return ["ovl_entry", 1, True, {"layer": 0, "path": path, "kind": kind, "mode": 0o755,
                                   "size": 0, "target": target, "wh": False}]


def test_an_entry_through_a_saved_symlink_is_refused(seed, tmp_path: Path) -> None:
    src, root, recs = seed
    outside = tmp_path / "outside"
    outside.mkdir()
    at = next(i for i, r in enumerate(recs) if r[0] == "ovl_entry") + 1
    crafted = recs[:at] + [_entry("/work/out", "link", str(outside)),
                           _entry("/work/out/planted", "dir")] + recs[at:]
    bad = write_records(tmp_path / "bad.img", src, crafted)
    with pytest.raises(ImageError, match="directory is missing"):
        _thaw(bad, root)
    assert os.listdir(outside) == []


def test_two_overlay_records_are_refused(seed, tmp_path: Path) -> None:
    src, root, recs = seed
    at = next(i for i, r in enumerate(recs) if r[0] == "overlay")
    bad = write_records(tmp_path / "bad.img", src, recs[:at + 1] + [recs[at]] + recs[at + 1:])
    with pytest.raises(ImageError, match="exactly one overlay record"):
        _thaw(bad, root)


def test_unmutated_overlay_seed_thaws(seed, tmp_path: Path) -> None:
    """The control: the seed holds file entries with data and thaws."""
    src, root, recs = seed
    assert any(r[0] == "ovl_data" for r in recs)
    assert any(r[0] == "ovl_entry" and r[3]["kind"] == "dir" for r in recs)
    _thaw(write_records(tmp_path / "same.img", src, recs), root)
