"""Hostile images at the structure level: valid framing and checksums, malicious contents.

Every thaw, inspect or verify of such an image must end in success or one ImageError --
never another exception, a hang, or unbounded memory -- and an image that thaws must run."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vkckpt.ckpt.inspect import describe
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.snapshot import write_image
from vkckpt.errors import ImageError
from vkckpt.image import ImageReader, ImageWriter
from vkckpt.kernel_idle import Deadlock
from vkckpt.testing.hostile_images import FIELD_CASES
from vkckpt.testing.oracle import Workload, freeze_points, golden, run_until
from vkckpt.testing.workload import make_root


@pytest.fixture(scope="module")
def seed_image(tmp_path_factory) -> tuple[Path, Path, list]:
    """A valid image of forkpipe frozen mid-run (several processes, pipes, sleepers)."""
    base = tmp_path_factory.mktemp("hostile")
    wl = Workload("forkpipe")
    gold = golden(wl, make_root(base, ["forkpipe"]))
    for at in freeze_points(gold, 40, seed=2):  # a point with sleepers, pipes, processes
        root = make_root(base, ["forkpipe"])
        k, _, _ = run_until(wl, root, at)
        path = base / "seed.img"
        write_image(k, str(path))
        recs = [(r.type, r.version, r.critical, r.fields) for r in ImageReader(path).records()]
        kinds = {r[0] for r in recs}
        if {"waitq", "pipe", "thread", "process"} <= kinds and len(k.procs) > 1:
            return path, root, recs
    raise AssertionError("no freeze point of forkpipe has sleepers on pipes")


def rewrite(path: Path, src: Path, recs: list) -> None:
    """Write recs as a new, correctly checksummed image with src's header ids."""
    h = ImageReader(src).header
    with ImageWriter(path, vkernel_id=h.vkernel_id) as w:
        for typ, ver, crit, fields in recs:
            w.add(typ, fields, version=ver, critical=crit)


#: Blocks a thawed hostile image runs for: what thaws must also run (a field of the wrong
#: type would otherwise surface inside the run, as a Python error, not an ImageError).
RUN_TICKS = 2_000_000


def attempt(path: Path, root: Path) -> None:
    try:
        k = thaw(str(path), ThawOptions(root=str(root), allow_changed_files=True,
                                        stdout=lambda b: None, stderr=lambda b: None,
                                        deliver_sigthaw=False))
    except ImageError:
        pass
    else:
        try:
            k.run(until_ticks=k.sched.ticks + RUN_TICKS)
        except Deadlock:
            pass  # a legitimate verdict on a state the mutation made hopeless
        finally:
            k.shutdown()
    try:
        describe(str(path))
    except ImageError:
        pass


def _set(recs: list, kind: str, field: str, value: object, index: int = 0) -> list:
    out = copy.deepcopy(recs)
    hits = [i for i, r in enumerate(out) if r[0] == kind]
    out[hits[index % len(hits)]][3][field] = value
    return out


CASES = FIELD_CASES  # shared with the CLI corpus (tests/test_image_corpus.py)


@pytest.mark.parametrize("kind,field,value", CASES, ids=[f"{c[0]}.{c[1]}" for c in CASES])
def test_malicious_field_is_refused_cleanly(seed_image, tmp_path: Path, kind: str,
                                            field: str, value: object) -> None:
    src, root, recs = seed_image
    if not any(r[0] == kind for r in recs):
        pytest.fail(f"seed image has no {kind} record")
    bad = tmp_path / "bad.img"
    rewrite(bad, src, _set(recs, kind, field, value))
    with pytest.raises(ImageError):
        k = thaw(str(bad), ThawOptions(root=str(root), allow_changed_files=True,
                                       stdout=lambda b: None, deliver_sigthaw=False))
        k.shutdown()


def test_file_path_cannot_escape_the_root(seed_image, tmp_path: Path) -> None:
    src, root, recs = seed_image
    recs = copy.deepcopy(recs)
    f = next(r for r in recs if r[0] == "file")
    f[3].update(kind="host", path="/../../etc/passwd", offset=0,
                fingerprint={"size": 0, "mtime_ns": 0, "sha256": None})
    bad = tmp_path / "bad.img"
    rewrite(bad, src, recs)
    with pytest.raises(ImageError, match="etc/passwd"):
        thaw(str(bad), ThawOptions(root=str(root), allow_changed_files=True))


def test_wide_register_of_the_wrong_width(seed_image, tmp_path: Path) -> None:
    src, root, recs = seed_image
    recs = copy.deepcopy(recs)
    th = next(r for r in recs if r[0] == "thread")
    th[3]["regs"]["xmm0"] = b"\x01" * 17
    bad = tmp_path / "bad.img"
    rewrite(bad, src, recs)
    with pytest.raises(ImageError, match="xmm0"):
        thaw(str(bad), ThawOptions(root=str(root), allow_changed_files=True))


_values = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70),
                    st.text(max_size=8), st.binary(max_size=16),
                    st.lists(st.integers(-3, 1 << 20), max_size=6),
                    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3))


FUZZ_EXAMPLES = int(os.environ.get("VKCKPT_FUZZ_EXAMPLES", "120"))  # make fuzz: 20000


@settings(max_examples=FUZZ_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_one_field(seed_image, tmp_path: Path, data) -> None:
    """Replace one field of one structural record with an arbitrary value."""
    src, root, recs = seed_image
    structural = [i for i, r in enumerate(recs) if r[0] not in ("pages", "meta")]
    i = data.draw(st.sampled_from(structural))
    field = data.draw(st.sampled_from(sorted(recs[i][3])))
    mutated = copy.deepcopy(recs)
    mutated[i][3][field] = data.draw(_values)
    bad = tmp_path / "fuzz.img"
    try:
        rewrite(bad, src, mutated)
    except ImageError:
        return  # the writer itself refuses values no reader could accept
    attempt(bad, root)
