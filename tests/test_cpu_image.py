"""The virtual CPU in images (engine/cpu_state.py): every image records the CPUID leaves,
emulator model and TSC its guests saw; a thaw refuses a CPU that lacks what they may rely on
(exit 125, naming it) and thaws through harmless differences, and images without the record
(formats 1.0 and 1.1) thaw as before."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from vkckpt.engine import cpu_state
from vkckpt.engine import cpumodel as M
from vkckpt.errors import ImageError
from vkckpt.testing.hostile_images import load_records, set_field, write_records
from vkckpt.testing.oracle import image_at, thaw_child
from vkckpt.testing.workload import Workload, make_root

WL = Workload("hello", ("cpu", "check"), quantum=101)


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list]:
    base = tmp_path_factory.mktemp("cpu")
    root = make_root(base, ["hello"])
    img = image_at(WL, root, 1000, base / "hello.img")
    return img, root, load_records(img)


def _leaves_with(recs: list, leaf: int, reg: int, fn) -> list:
    """The cpu record's leaves with register reg (0..3 = EAX..EDX) of leaf.0 set to fn(old)."""
    rows = copy.deepcopy(next(r[3] for r in recs if r[0] == "cpu")["leaves"])
    for row in rows:
        if (row[0], row[1]) == (leaf, 0):
            row[2 + reg] = fn(row[2 + reg])
    return rows


def _thaw(frozen, tmp_path: Path, name: str, recs: list) -> subprocess.CompletedProcess:
    img, root, _ = frozen
    edited = write_records(tmp_path / name, img, recs)
    p, _ = thaw_child(edited, root)
    return p


def test_every_image_records_the_cpu_its_guests_saw(frozen) -> None:
    img, _, recs = frozen
    cpu = [r for r in recs if r[0] == "cpu"]
    assert len(cpu) == 1 and cpu[0][2] is False  # optional: a 1.1 reader skips it
    assert cpu[0][3] == cpu_state.save()
    rows = {(r[0], r[1]): tuple(r[2:]) for r in cpu[0][3]["leaves"]}
    assert rows == M.LEAVES
    cpu_state.check([cpu[0][3]])  # this CPU is the image's


def test_harmless_differences_thaw(frozen, tmp_path: Path) -> None:
    """A different brand string, an extra feature this CPU lacks in the image (the guest
    never saw it), or no record at all: the thaw runs and finishes as the original."""
    img, root, recs = frozen
    want, _ = thaw_child(img, root)
    assert want.returncode == 0 and want.stdout, want.stderr
    brand = set_field(recs, "cpu", "leaves", _leaves_with(recs, 0x80000002, 0, lambda v: v ^ 1))
    fewer = set_field(recs, "cpu", "leaves", _leaves_with(recs, 1, 2, lambda v: v & ~(1 << 25)))
    none = [r for r in recs if r[0] != "cpu"]
    for name, edited in (("brand", brand), ("fewer", fewer), ("none", none)):
        p = _thaw(frozen, tmp_path, f"{name}.img", edited)
        assert (p.returncode, p.stdout) == (0, want.stdout), (name, p.stderr)


@pytest.mark.parametrize(("what", "edit", "said"), [
    ("a feature this CPU lacks", ("leaves", 1, 2, 1 << 28), "0x1.ecx bit 28"),
    ("another emulator model", ("uc_model", 99), "emulator CPU model 99"),
    ("another TSC rate", ("tsc_per_ns", 2), "TSC at 2 GHz"),
])
def test_differences_a_guest_may_rely_on_are_refused(frozen, tmp_path: Path, what: str,
                                                     edit: tuple, said: str | None) -> None:
    _, _, recs = frozen
    if edit[0] == "leaves":
        _, leaf, reg, bit = edit
        assert not M.cpuid(leaf, 0)[reg] & bit  # the case needs a bit this CPU lacks
        edited = set_field(recs, "cpu", "leaves", _leaves_with(recs, leaf, reg,
                                                               lambda v: v | bit))
    else:
        edited = set_field(recs, "cpu", edit[0], edit[1])
    p = _thaw(frozen, tmp_path, "bad.img", edited)
    assert p.returncode == 125, (what, p.stderr)
    err = p.stderr.decode()
    assert "virtual CPU differs" in err and len(err.strip().splitlines()) == 1, err
    if said:
        assert said in err, err


def test_missing_features_are_named() -> None:
    leaves = {k: list(v) for k, v in M.LEAVES.items()}
    assert cpu_state.missing_features(leaves) == []
    leaves[(1, 0)][2] |= 1 << 28 | 1 << 30
    assert cpu_state.missing_features(leaves) == ["0x1.ecx bit 28", "0x1.ecx bit 30"]
    with pytest.raises(ImageError, match="features this vkckpt's CPU lacks"):
        cpu_state.check([{**cpu_state.save(), "leaves": [[k[0], k[1], *v]
                                                          for k, v in leaves.items()]}])
    with pytest.raises(ImageError, match="twice"):
        cpu_state.check([{**cpu_state.save(), "leaves": [[1, 0, 0, 0, 0, 0]] * 2}])


def test_verify_refuses_what_thaw_refuses(frozen, tmp_path: Path) -> None:
    img, root, recs = frozen
    bad = write_records(tmp_path / "bad.img", img, set_field(recs, "cpu", "uc_model", 99))
    p = subprocess.run([sys.executable, "-m", "vkckpt", "verify", "--root", str(root), str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "emulator CPU model 99" in p.stderr, p.stderr
