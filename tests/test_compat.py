"""The compatibility suite (vkckpt/testing/compat.py): Debian's busybox-static applets,
bash-static scripts and the dynamic sqlite3, lua5.4 and python3 (under a read-only /usr),
natively (chrooted, the host kernel as oracle) and under the vkernel, each also frozen at two
scheduling points and thawed.  The slow cases are `make compat`'s alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from vkckpt.testing.compat import Result, run_case, table, verdict
from vkckpt.testing.compat_cases import CASES

DYNAMIC = ("sqlite3", "lua5.4", "python3")


@pytest.mark.parametrize("case", [c for c in CASES if not c.slow],
                         ids=lambda c: f"{c.suite}/{c.name}")
def test_same_as_the_host_and_across_a_freeze(case, tmp_path: Path) -> None:
    r = run_case(case, tmp_path, freezes=2)
    detail = f"native {r.native!r}\nvkckpt {r.vk!r}\nstderr {r.vk_err[-600:]!r}"
    if case.suite in DYNAMIC:  # its program ran and printed: two equal failures test nothing
        assert r.native[0] and r.native[1] != 127, detail
    if case.known:
        # a known difference must still be one: when it goes, its note must go too
        assert not r.same, f"{case.name} now matches the host: drop its `known` note"
    else:
        assert r.same, detail
    assert r.points > 0, "no freeze point inside the run"
    assert not r.frozen, "; ".join(r.frozen)


def test_the_suite_is_large_and_mostly_identical() -> None:
    """>= 100 busybox invocations, >= 20 of the dynamic programs; known differences below 5%
    of all cases (every other case is asserted identical above)."""
    busybox = [c for c in CASES if c.suite.startswith("busybox")]
    assert len(busybox) >= 100
    names = [(c.suite, c.name) for c in CASES]
    assert len(set(names)) == len(names)
    known = [c for c in CASES if c.known]
    assert len(known) <= 0.05 * len(CASES), [c.name for c in known]
    dynamic = [c for c in CASES if c.suite in DYNAMIC]
    assert len(dynamic) >= 20
    assert all(sum(c.suite == s for c in dynamic) >= 5 for s in DYNAMIC)
    assert all(c.binds == ("/usr",) for c in dynamic)


def test_the_slow_slice_is_bounded_and_holds_no_known_case() -> None:
    """The cases left to `make compat` are few, and none is a known difference: a known
    case that starts to match must fail a test (above) so that its note goes."""
    slow = [c for c in CASES if c.slow]
    assert len(slow) <= 12, [c.name for c in slow]
    assert not [c.name for c in slow if c.known]


def test_the_table_counts_each_suite_and_the_verdicts() -> None:
    by = {c.name: c for c in CASES if c.suite == "busybox"}
    assert by["find-name"].known and by["setsid"].known and not by["echo"].known
    rs = [Result(by["echo"], (b"2\n", 0), (b"2\n", 0)),
          Result(by["find-name"], (b"a\n", 0), (b"b\n", 0)),
          Result(by["setsid"], (b"x\n", 0), (b"x\n", 0)),
          Result(by["true"], (b"", 0), (b"", 0), frozen=["tick 9: output differ"])]
    assert [verdict(r) for r in rs] == ["same", "known", "FIXED", "DIFF"]
    assert table(rs)[1].split() == ["busybox", "4", "3", "2"]
    assert table(rs)[-1].split() == ["all", "4", "3", "2"]


def test_every_known_difference_is_named_in_the_abi_page() -> None:
    """vkckpt-abi(7) KNOWN DIFFERENCES lists each known case with its reason, and says
    whether it is a design choice or a gap."""
    from vkckpt.manpages import abi_page, roff_escape

    page = abi_page()
    section = page[page.index('.SH "KNOWN DIFFERENCES"'):page.index(".SH NOTES")]
    known = [c for c in CASES if c.known]
    for c in known:
        assert f".B {roff_escape(c.suite + '/' + c.name)}\n" in section, c.name
        assert roff_escape(c.known) in section, c.name
    assert section.count(".TP\n") == len(known)
    assert f"{len(CASES) - len(known)} ({100 * (1 - len(known) / len(CASES)):.1f}%)" in section
