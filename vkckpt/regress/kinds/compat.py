"""compat: a program nobody here wrote gives the host's output and status, and so does each
of its runs thawed at freeze points (the compatibility suite, vkckpt/testing/compat.py)."""

from __future__ import annotations

from vkckpt.regress.trial import CaseFailed, Trial
from vkckpt.testing.compat import run_case, verdict
from vkckpt.testing.compat_cases import CASES

_BY_ID = {f"{c.suite}/{c.name}": c for c in CASES}


def run(t: Trial) -> None:
    """Run case.compat natively (chrooted) and under the vkernel, frozen at case.points."""
    case = _BY_ID.get(t.case.compat)
    if case is None:
        raise CaseFailed(f"no compatibility case {t.case.compat!r}")
    r = run_case(case, t.dir, freezes=t.case.points)
    t.points = r.points
    v = verdict(r)
    if v == "FIXED":
        t.fail(f"{t.case.compat} now matches the host: drop its known note")
    elif v == "DIFF":
        for why in r.frozen:
            t.fail(f"{t.case.compat}: {why}")
        if not r.same:
            t.fail(f"{t.case.compat}: host {r.native!r}, vkernel {r.vk!r}")
