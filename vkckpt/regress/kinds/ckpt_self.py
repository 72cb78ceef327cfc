"""ckpt-self: checkpoint(2) from inside the guest (guest ckpt_self, self and external).

checkpoint(2) returns 0 in the checkpointing run and the caller's retval after the thaw; an
image thawed and frozen again at once is unchanged.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vkckpt.ckpt.freeze import FreezePlan, drive
from vkckpt.ckpt.snapshot import write_image
from vkckpt.regress.imagediff import MAX_FINDINGS, diff_states
from vkckpt.regress.imagestate import load_state
from vkckpt.regress.trial import CaseFailed, Trial
from vkckpt.testing.outcome import Outcome, status_text
from vkckpt.testing.workload import Workload


def run(t: Trial) -> None:
    """Run the guest (it writes work/MODE.img), thaw the image in a fresh process."""
    mode = t.case.mode
    t.wl = Workload("ckpt_self", (mode, f"work/{mode}.img"), quantum=997)
    live = t.boot()
    live.status = drive(live.k, FreezePlan())
    ran = live.outcome()
    live.k.shutdown()
    image = t.root.path / "work" / f"{mode}.img"
    if ran.status != 0 or not image.exists():
        raise CaseFailed(f"the checkpointing run failed: status {status_text(ran.status)}, "
                         f"output {ran.stdout!r}")
    kept = t.dir / f"{mode}.img"
    shutil.copy2(image, kept)
    t.root.save("frozen")
    lines = ran.stdout.decode().splitlines()
    end = t.child(kept, limit=2 * ran.ticks + 100_000)
    (_check_self if mode == "self" else _check_external)(t, lines, end)
    t.points = 1
    _refreeze_identical(t, kept)


def _check_self(t: Trial, lines: list[str], end: Outcome) -> None:
    """The thaw resumes after the guest's own checkpoint(2) and exits 3."""
    got = end.stdout.decode().splitlines()
    acc = lines[0].split("acc=")[-1]
    want = [f"resumed from the image acc={acc}", lines[1]]
    if not lines[0].startswith("checkpointed acc=") or got != want:
        t.fail(f"thaw printed {got}, expected {want}")
    if end.status != 3 << 8:
        t.fail(f"thaw exit status {status_text(end.status)}, expected 0x300 (3)")


def _check_external(t: Trial, lines: list[str], end: Outcome) -> None:
    """The parent checkpointed its worker: the thaw prints the worker's tail, exits 4."""
    got = end.stdout.decode().splitlines()
    worker = [ln for ln in lines if ln.startswith("worker")]
    if "parent: checkpoint of the worker returned 0" not in lines:
        t.fail(f"the parent's checkpoint(2) failed: {lines}")
    if not got or got != worker[len(worker) - len(got):] or got[-1] != "worker done":
        t.fail(f"thaw printed {got}, expected the tail of {worker}")
    if end.status != 4 << 8:
        t.fail(f"thaw exit status {status_text(end.status)}, expected 0x400 (4)")


def _refreeze_identical(t: Trial, image: Path) -> None:
    """Thawed and frozen again at once, the image's state must be unchanged."""
    st = load_state(image)
    scope = (st.recs.get("kernel", {}).get(None) or {}).get("scope")
    live = t.thaw(image, "frozen")
    again = t.dir / "refrozen.img"
    write_image(live.k, str(again), scope=scope)
    live.k.shutdown()
    findings = diff_states(st, load_state(again), labels=("image", "refrozen"))
    if findings:
        t.fail(f"thawed and frozen again, the image differs in {len(findings)} place(s)")
        t.report = "state that differs (image vs thawed and frozen again):\n" + \
            "\n".join(f"  {f.category}: {f.text}" for f in findings[:MAX_FINDINGS])
