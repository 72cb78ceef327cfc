"""Workloads: a bundled guest with arguments, and the vkernel (KernelConfig) that runs it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.guests.build import guest_path


@dataclass(frozen=True)
class Workload:
    """A bundled guest run as pid 1 with arguments (cwd is the guest root)."""

    name: str
    args: tuple[str, ...] = ()
    quantum: int = 997  # small slices: many distinct scheduling (freeze) points
    env: tuple[tuple[str, str], ...] = ()

    def config(self, root: Path, out: list[bytes], err: list[bytes] | None = None, *,
               stdin: bytes | None = None, log: Callable[[str], None] | None = None
               ) -> KernelConfig:
        """The vkernel running this workload in root; the guests' stdout goes to out, their
        stderr to err (default: out too); stdin and log as in KernelConfig."""
        return KernelConfig(root=str(root), quantum=self.quantum, stdout=out.append,
                            stderr=(out if err is None else err).append, stdin=stdin, log=log,
                            processes=[ProcessSpec(f"/{self.name}", [self.name, *self.args],
                                                   dict(self.env))])


def make_root(base: Path, names: list[str]) -> Path:
    """A fresh guest root holding the named guests and an empty /work directory."""
    root = Path(tempfile.mkdtemp(prefix="root-", dir=base))
    (root / "work").mkdir()
    for n in names:
        shutil.copy2(guest_path(n), root / n)
    return root
