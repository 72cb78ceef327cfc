"""The kinds of regression case, one module each, and the table that names them.

Each module's `run(trial)` exercises one case of its kind (see cases.py for what each checks)
and records problems on the Trial; raising CaseFailed ends the case.
"""

from __future__ import annotations

from collections.abc import Callable

from vkckpt.regress.kinds import chain, ckpt_self, ckpt_signals, compat, fixture, iterated, points
from vkckpt.regress.trial import Trial

#: case kind -> its runner (the kinds cases.py describes; `vkckpt regress --list` shows them).
KINDS: dict[str, Callable[[Trial], None]] = {
    "points": points.run,
    "iterated": iterated.run,
    "chain": chain.run,
    "ckpt-signals": ckpt_signals.run,
    "ckpt-self": ckpt_self.run,
    "fixture": fixture.run,
    "compat": compat.run,
}
