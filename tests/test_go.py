"""Go programs (Debian's go, vkckpt/guests/*.go): built like the C guests, frozen anywhere and
thawed they finish like the run never frozen, and GOMAXPROCS=4 runs the same for any --cpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from vkckpt import rounds
from vkckpt.ckpt.snapshot import write_image
from vkckpt.errors import GuestBuildError
from vkckpt.guests import build, gobuild
from vkckpt.runner import boot
from vkckpt.testing.oracle import (
    Workload,
    freeze_points,
    frozen_and_thawed_here,
    golden,
    run_noting,
    run_until,
    thaw_in_new_process,
    thaw_in_process,
)
from vkckpt.testing.workload import make_root

MAXPROCS4 = (("GOMAXPROCS", "4"),)
#: Each Go guest with the guests its root needs besides itself.
WORKLOADS: dict[str, tuple[Workload, tuple[str, ...]]] = {
    "gocompute": (Workload("gocompute", quantum=5_000), ()),
    "gocompute4": (Workload("gocompute", quantum=5_000, env=MAXPROCS4), ()),
    "gotimers": (Workload("gotimers", quantum=5_000), ()),
    "gotimers4": (Workload("gotimers", quantum=5_000, env=MAXPROCS4), ()),
    "gofiles": (Workload("gofiles", ("work",), quantum=5_000), ()),
    "gogc": (Workload("gogc", quantum=20_000), ()),
    "gogc4": (Workload("gogc", quantum=20_000, env=MAXPROCS4), ()),  # parallel mark workers
    "goexec": (Workload("goexec", quantum=5_000, env=MAXPROCS4), ("hello",)),
    "gosignals": (Workload("gosignals", quantum=3_000), ()),
    "gohttp": (Workload("gohttp", quantum=5_000), ()),  # net/http over virtual loopback
}


def test_every_go_guest_has_a_workload() -> None:
    assert build.go_guest_names() == sorted({wl.name for wl, _ in WORKLOADS.values()})


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("go")


def _root(base: Path, key: str) -> Path:
    wl, extra = WORKLOADS[key]
    return make_root(base, [wl.name, *extra])


@pytest.mark.parametrize("key", sorted(WORKLOADS))
def test_go_frozen_anywhere_thaws_identically(base: Path, key: str) -> None:
    wl = WORKLOADS[key][0]
    gold = golden(wl, _root(base, key))
    assert gold.status == (15 if wl.name == "gosignals" else 0), gold.output[-500:]  # SIGTERM
    assert f"{wl.name} done".encode() in gold.output
    points = freeze_points(gold, 6, seed=5)
    assert len(points) == 6
    for at in points:
        before, after, k2 = frozen_and_thawed_here(wl, _root(base, key), at)
        status2 = k2.run()
        assert b"".join(before) + b"".join(after) == gold.output, f"output differs at {at}"
        assert (status2, k2.sched.ticks) == (gold.status, gold.ticks), f"differs at {at}"
        assert k2.statuses == gold.statuses
        k2.shutdown()


def test_go_thaws_in_a_fresh_host_process(base: Path) -> None:
    wl = WORKLOADS["gotimers"][0]
    gold = golden(wl, _root(base, "gotimers"))
    at = freeze_points(gold, 1, seed=2)[0]
    root = _root(base, "gotimers")
    k, before, status = run_until(wl, root, at)
    assert status is None
    write_image(k, str(root / "x.img"))
    out = thaw_in_new_process(root / "x.img", root)
    assert b"".join(before) + out.output == gold.output
    assert (out.status, out.ticks, out.statuses) == (gold.status, gold.ticks, gold.statuses)


def _run(wl: Workload, root: Path, cpus: int) -> tuple:
    out: list[bytes] = []
    cfg = wl.config(root, out)
    cfg.cpus = cpus
    k = boot(cfg)
    status, points = run_noting(k)
    result = (b"".join(out), status, k.sched.ticks, dict(k.statuses), points)
    k.shutdown()
    return result


@pytest.mark.parametrize("key", ["gocompute4", "goexec"])
def test_gomaxprocs_4_is_the_same_with_1_and_2_cpus(base: Path, key: str) -> None:
    wl = WORKLOADS[key][0]
    one = _run(wl, _root(base, key), 1)
    assert one[1] == 0 and one[0].endswith(f"{wl.name} done\n".encode())
    assert _run(wl, _root(base, key), 2) == one


def test_goexec_frozen_with_2_cpus_thaws_with_1(base: Path) -> None:
    wl = WORKLOADS["goexec"][0]
    gold = _run(wl, _root(base, "goexec"), 1)
    for at in freeze_points(golden(wl, _root(base, "goexec")), 2, seed=9):
        root = _root(base, "goexec")
        out: list[bytes] = []
        cfg = wl.config(root, out)
        cfg.cpus = 2
        k = boot(cfg)
        assert k.run(until_ticks=at) is None
        write_image(k, str(root / "x.img"))
        k.shutdown()
        after: list[bytes] = []
        k2 = thaw_in_process(root / "x.img", after, root)
        k2.cpu_pool = rounds.CpuPool(1)
        assert k2.run() == gold[1]
        assert b"".join(out) + b"".join(after) == gold[0]
        assert k2.sched.ticks == gold[2]
        k2.shutdown()


def test_missing_go_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GuestBuildError, match="make debs"):
        build.compile_source(build.source_path("gocompute"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_go_guest_is_cached_by_source_and_go_version(tmp_path: Path) -> None:
    src = tmp_path / "tiny.go"
    src.write_text('package main\n\nimport "os"\n\nfunc main() { os.Exit(4) }\n')
    first = build.compile_source(src, tmp_path / "out")
    assert first.name == gobuild.output_name(src) and first.name.startswith("tiny-")
    mtime = first.stat().st_mtime_ns
    assert build.compile_source(src, tmp_path / "out").stat().st_mtime_ns == mtime
    src.write_text('package main\n\nimport "os"\n\nfunc main() { os.Exit(5) }\n')
    assert gobuild.output_name(src) != first.name


def test_go_build_errors_are_reported(tmp_path: Path) -> None:
    src = tmp_path / "broken.go"
    src.write_text("package main\n\nfunc main() { undefinedThing() }\n")
    with pytest.raises(GuestBuildError, match="undefinedThing"):
        build.compile_source(src, tmp_path / "out")


def test_changed_rlimits_are_in_the_image_and_survive_a_thaw(base: Path) -> None:
    """The rlimits guest, frozen after it lowered RLIMIT_NOFILE, carries the changed limits
    in its process record, and the thawed run still refuses descriptors above them."""
    from vkckpt.image import ImageReader

    wl = Workload("rlimits", quantum=97)
    gold = golden(wl, make_root(base, ["rlimits"]))
    for at in gold.points:
        root = make_root(base, ["rlimits"])
        k, before, status = run_until(wl, root, at)
        if b"set core: ok" in b"".join(before):
            break
        k.shutdown()
    else:
        raise AssertionError("no scheduling point after the limits changed")
    assert status is None
    write_image(k, str(root / "x.img"))
    k.shutdown()
    proc = next(r for r in ImageReader(root / "x.img").records()
                if r.type == "process" and r.fields["pid"] == 1)
    assert proc.fields["rlimits"] == [[4, 1 << 20, 2 << 20], [7, 12, 1024]]
    after: list[bytes] = []
    k2 = thaw_in_process(root / "x.img", after, root)
    assert k2.procs[1].fds.limit == 12
    assert k2.run() == gold.status
    assert b"".join(before) + b"".join(after) == gold.output


@pytest.mark.parametrize("key", ["gocompute4", "goexec"])
def test_go_freeze_thaw_freeze_is_byte_identical(base: Path, key: str) -> None:
    wl = WORKLOADS[key][0]
    gold = golden(wl, _root(base, key))
    for at in freeze_points(gold, 2, seed=4):
        root = _root(base, key)
        k, _, status = run_until(wl, root, at)
        assert status is None
        a, b = root / "a.img", root / "b.img"
        write_image(k, str(a))
        k.shutdown()
        k2 = thaw_in_process(a, [], root)
        write_image(k2, str(b))
        k2.shutdown()
        assert a.read_bytes() == b.read_bytes(), f"re-frozen image differs at tick {at}"
