"""Shared fixtures: built guest programs and fresh guest roots holding them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vkckpt.guests import build


@pytest.fixture
def no_engine_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Engine() is built anew (for tests that change how engines are built)."""
    from vkckpt.engine import pool

    monkeypatch.setattr(pool, "POOL", pool.EnginePool(0))


@pytest.fixture(scope="session")
def guest_bins() -> dict[str, Path]:
    """Every bundled guest, built (cached) once per session."""
    return build.build_all()


@pytest.fixture
def make_root(tmp_path: Path, guest_bins: dict[str, Path]):
    """Return a function creating a fresh guest root that holds the named guests."""
    count = 0

    def make(*names: str) -> Path:
        nonlocal count
        count += 1
        root = tmp_path / f"root{count}"
        (root / "work").mkdir(parents=True)
        for n in names or tuple(guest_bins):
            shutil.copy2(guest_bins[n], root / n)
        return root

    return make
