"""How a run ended: what the oracle and `vkckpt regress` compare between two runs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Outcome:
    """A run's (or the part after a thaw's) output, wait statuses, ticks and schedule points.

    stdout and stderr are kept apart when the run kept them apart; a run that wrote both
    streams into one list has everything in stdout (`output` is then that list's bytes)."""

    stdout: bytes
    stderr: bytes = b""
    status: int | None = None
    ticks: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    points: list[int] = field(default_factory=list)  # ticks at every scheduling point

    @property
    def output(self) -> bytes:
        """Everything the guests printed: stdout, then stderr."""
        return self.stdout + self.stderr

    def diffs(self, want: Outcome, *, ticks: bool = True) -> list[str]:
        """What differs from want, in words (empty when identical)."""
        out = []
        for name in ("stdout", "stderr"):
            a, b = getattr(want, name), getattr(self, name)
            if a != b:
                out.append(f"{name} differs: {first_line_diff(a, b)}")
        if self.status != want.status:
            out.append(f"exit status {status_text(self.status)}, golden "
                       f"{status_text(want.status)}")
        if ticks and self.ticks != want.ticks:
            out.append(f"ticks {self.ticks}, golden {want.ticks}")
        if self.statuses != want.statuses:
            out.append(f"process statuses {self.statuses}, golden {want.statuses}")
        return out


def status_text(s: int | None) -> str:
    """A wait status in reports (None: the run stopped without ending)."""
    return "none (stopped)" if s is None else f"{s:#x}"


def first_line_diff(want: bytes, got: bytes) -> str:
    """The first line where got leaves want, in words."""
    a, b = want.splitlines(keepends=True), got.splitlines(keepends=True)
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"line {i + 1}: golden {x!r}, thawed {y!r}"
    if len(a) != len(b):
        i = min(len(a), len(b))
        extra = (a if len(a) > len(b) else b)[i]
        return (f"{'golden' if len(a) > len(b) else 'thawed'} has {abs(len(a) - len(b))} more "
                f"line(s), from line {i + 1}: {extra!r}")
    return "(same lines, different bytes)"
