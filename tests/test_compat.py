"""The compatibility suite (vkckpt/testing/compat.py): Debian's busybox-static applets and
bash-static scripts, natively (chrooted, the host kernel as oracle) and under the vkernel,
each also frozen at two scheduling points and thawed."""

from __future__ import annotations

from pathlib import Path

import pytest

from vkckpt.testing.compat import run_case
from vkckpt.testing.compat_cases import CASES


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.suite}/{c.name}")
def test_same_as_the_host_and_across_a_freeze(case, tmp_path: Path) -> None:
    r = run_case(case, tmp_path, freezes=2)
    detail = f"native {r.native!r}\nvkckpt {r.vk!r}\nstderr {r.vk_err[-600:]!r}"
    if case.known:
        # a known difference must still be one: when it goes, its note must go too
        assert not r.same, f"{case.name} now matches the host: drop its `known` note"
    else:
        assert r.same, detail
    assert r.points > 0, "no freeze point inside the run"
    assert not r.frozen, "; ".join(r.frozen)


def test_the_suite_is_large_and_mostly_identical() -> None:
    """>= 100 busybox invocations; known differences below 5% of all cases (every other
    case is asserted identical above)."""
    busybox = [c for c in CASES if c.suite.startswith("busybox")]
    assert len(busybox) >= 100
    assert len({c.name for c in CASES if c.suite == "busybox"}) == \
        len([c for c in CASES if c.suite == "busybox"])
    known = [c for c in CASES if c.known]
    assert len(known) <= 0.05 * len(CASES), [c.name for c in known]
