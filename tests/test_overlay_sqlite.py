"""Debian's sqlite3 writing a database on an overlay root, frozen along the way into an
incremental chain: every image thaws and finishes as the unfrozen run, although the
database went on changing after it was taken, and the host root never changes."""

from __future__ import annotations

from pathlib import Path

from test_overlay import finish_thawed

from vkckpt.ckpt.chain import ImageChain
from vkckpt.ckpt.snapshot import write_image
from vkckpt.fs.treedigest import tree_digest
from vkckpt.runner import boot
from vkckpt.testing import compat
from vkckpt.testing.compat_dynamic import SQLITE
from vkckpt.testing.oracle import image_records, run_noting
from vkckpt.testing.outcome import Outcome

CASE = next(c for c in SQLITE if c.name == "journal-file")


def _config(root: Path, out: list[bytes]):  # noqa: ANN202
    cfg = compat.config(CASE, root, out, out)
    cfg.fs = "overlay"
    cfg.log = None
    return cfg


def test_sqlite_chain_on_an_overlay(tmp_path: Path) -> None:
    root = compat.make_root(tmp_path, CASE)
    digest = tree_digest(str(root))
    out: list[bytes] = []
    k = boot(_config(root, out))
    status, points = run_noting(k)
    gold = Outcome(b"".join(out), b"", status, k.sched.ticks, dict(k.statuses), points)
    k.shutdown()
    assert status == 0 and b"ok" in gold.output, gold.output
    inside = [p for p in points if 0 < p < gold.ticks]
    ats = [inside[len(inside) * i // 9] for i in range(4, 9)]  # sqlite3 loads first
    out = []
    k = boot(_config(root, out))
    chain = ImageChain()
    images = []
    for i, at in enumerate(ats):
        assert k.run(until_ticks=at) is None
        img = tmp_path / f"sq{i}.img"
        write_image(k, str(img), chain=chain, incremental=i > 0)
        images.append((img, b"".join(out), k.config.stdin))  # the stdin not read yet
    assert k.run() == 0 and b"".join(out) == gold.output
    k.shutdown()
    changed = [{f["path"] for _, f in image_records(img, ("ovl_entry",))}
               for img, _, _ in images]
    assert sum("/tmp/t.db" in c or "/tmp/t.db-journal" in c for c in changed) >= 2
    for img, before, stdin in reversed(images):
        finish_thawed(img, root, before, gold, compat.bind_specs(CASE), stdin)
    assert tree_digest(str(root)) == digest
