"""Every difference between two images, in words and by category.

Registers (thread, name, both values), memory (the VMA address ranges whose pages differ),
descriptors, signal state, the scheduler: `diff_states` compares two ImageStates record by
record, with host-only values normalized away as in the state digest.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from vkckpt.abi.mman import PAGE
from vkckpt.regress.imagestate import ImageState, load_state
from vkckpt.testing.digest import normalized

MAX_FINDINGS = 40        # per report
MAX_PER_RECORD = 12      # field differences listed per record


@dataclass(frozen=True)
class Finding:
    """One difference between the golden and the thawed state."""

    category: str   # registers, memory, fds, signals, scheduler, process, kernel, threads
    text: str


_THREAD_CAT = {"regs": "registers", "sigmask": "signals", "pending": "signals",
               "altstack": "signals", "saved_sigmask": "signals", "ckpt_frames": "signals",
               "state": "scheduler", "sleep": "scheduler", "wake_result": "scheduler",
               "retry": "scheduler", "retry_call": "scheduler", "restart_nr": "scheduler",
               "ticks": "scheduler", "futex_bitset": "scheduler"}
_PROCESS_CAT = {"pending": "signals", "actions": "signals", "fds": "fds", "itimers": "signals",
                "ptimers": "signals"}
_KERNEL_CAT = {"ticks": "scheduler", "idle_ns": "scheduler", "timer_seq": "scheduler",
               "runq": "scheduler", "timers": "scheduler", "sleep_seq": "scheduler",
               "quantum": "scheduler"}
_TYPE_CAT = {"file": "fds", "pipe": "fds", "waitq": "scheduler", "vmspace": "memory",
             "buffer": "memory"}


def _category(rtype: str, top: str) -> str:
    """The category a field (top-level name `top`) of a record of rtype reports under."""
    if rtype == "thread":
        return _THREAD_CAT.get(top, "threads")
    if rtype == "process":
        return _PROCESS_CAT.get(top, "process")
    if rtype == "kernel":
        return _KERNEL_CAT.get(top, "kernel")
    return _TYPE_CAT.get(rtype, rtype)


def _show(v: object) -> str:
    """A field value in a finding (ints above 9 in hex, short bytes as a little-endian number)."""
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, int):
        return f"{v:#x}" if abs(v) > 9 else str(v)
    if isinstance(v, bytes):
        return "0x" + v[::-1].hex() if len(v) <= 16 else f"<{len(v)} bytes>"
    s = repr(v)
    return s if len(s) <= 120 else s[:117] + "..."


def _walk(a: object, b: object, path: list[str]) -> Iterable[tuple[list[str], object, object]]:
    """(path, a, b) for every leaf where a and b differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k, _MISSING) != b.get(k, _MISSING):
                yield from _walk(a.get(k, _MISSING), b.get(k, _MISSING), [*path, str(k)])
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                yield from _walk(x, y, [*path, f"[{i}]"])
    else:
        yield path, a, b


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


_MISSING = _Missing()


def _record_name(rtype: str, key: object, f: dict) -> str:
    """A record in words."""
    if rtype == "thread":
        return f"thread {key} (pid {f.get('pid')})"
    if rtype in ("process", "vmspace"):
        return f"{'process' if rtype == 'process' else 'address space of'} pid {key}"
    if rtype == "kernel":
        return "kernel"
    return f"{rtype} {key}"


def _record_findings(g: ImageState, t: ImageState, labels: tuple[str, str]
                     ) -> list[Finding]:
    """Differences of every record but pages, field by field."""
    la, lb = labels
    out: list[Finding] = []
    for rtype in sorted(set(g.recs) | set(t.recs)):
        gr, tr = g.recs.get(rtype, {}), t.recs.get(rtype, {})
        for key in sorted(set(gr) | set(tr), key=repr):
            a, b = gr.get(key), tr.get(key)
            if a == b:
                continue
            if a is None or b is None:
                which = la if b is None else lb
                rec = a if b is None else b
                out.append(Finding(_category(rtype, ""), f"{_record_name(rtype, key, rec)} "
                                   f"exists only in the {which} run"))
                continue
            name = _record_name(rtype, key, a)
            for n, (path, x, y) in enumerate(_walk(normalized(rtype, a),
                                                   normalized(rtype, b), [])):
                if n == MAX_PER_RECORD:
                    out.append(Finding(_category(rtype, path[0]), f"{name}: ... (more)"))
                    break
                if rtype == "thread" and path[:1] == ["regs"] and len(path) == 2:
                    out.append(Finding("registers", f"{name} register {path[1]}: {la} "
                                       f"{_show(x)} {lb} {_show(y)}"))
                else:
                    field_ = ".".join(path).replace(".[", "[")
                    out.append(Finding(_category(rtype, path[0] if path else ""),
                                       f"{name} {field_}: {la} {_show(x)} {lb} {_show(y)}"))
    return out


def _prot(p: int) -> str:
    """PROT_* bits as rwx."""
    return "".join(c if p & bit else "-" for c, bit in (("r", 1), ("w", 2), ("x", 4)))


def _memory_findings(g: ImageState, t: ImageState, labels: tuple[str, str]
                     ) -> list[Finding]:
    """Differing pages, as runs of guest addresses within each VMA."""
    la, lb = labels
    import numpy as np

    zero = bytes(PAGE)
    diff: dict[int, dict[int, tuple[int, int, int, int]]] = {}
    for bid in sorted(set(g.pages) | set(t.pages)):
        gp, tp = g.pages.get(bid, {}), t.pages.get(bid, {})
        for page in sorted(set(gp) | set(tp)):
            a, b = gp.get(page, zero), tp.get(page, zero)
            if a != b:
                ne = np.flatnonzero(np.frombuffer(a, np.uint8) != np.frombuffer(b, np.uint8))
                first = int(ne[0])
                diff.setdefault(bid, {})[page] = (len(ne), first, a[first], b[first])
    out: list[Finding] = []
    seen: set[tuple[int, int]] = set()
    for pid in sorted(set(g.recs.get("vmspace", {})) | set(t.recs.get("vmspace", {}))):
        for v in t.vmas(pid) or g.vmas(pid):
            start, end, prot, _flags, name, bid, off = v[:7]
            lo, hi = off // PAGE, (off + end - start) // PAGE
            pages = sorted(p for p in diff.get(bid, {}) if lo <= p < hi)
            runs: list[list[int]] = []
            for p in pages:
                seen.add((bid, p))
                if runs and p == runs[-1][-1] + 1:
                    runs[-1].append(p)
                else:
                    runs.append([p])
            for run in runs:
                a0 = start + run[0] * PAGE - off
                a1 = start + (run[-1] + 1) * PAGE - off
                nbytes = sum(diff[bid][p][0] for p in run)
                _, first, gb, tb = diff[bid][run[0]]
                label = name or v[7] or "anonymous"
                out.append(Finding("memory", f"pid {pid} {a0:#x}-{a1:#x} in "
                                   f"{label} ({_prot(prot)}, {start:#x}-{end:#x}): "
                                   f"{len(run)} page(s), {nbytes} byte(s) differ, first at "
                                   f"{a0 + first:#x}: {la} {gb:#04x} {lb} {tb:#04x}"))
    for bid, pages in diff.items():
        for p in sorted(pages):
            if (bid, p) not in seen:
                out.append(Finding("memory", f"buffer {bid} page {p} (mapped by no "
                                   f"VMA): {pages[p][0]} byte(s) differ"))
    return out


def diff_states(g: ImageState, t: ImageState, *, memory: bool = True,
                labels: tuple[str, str] = ("golden", "thawed")) -> list[Finding]:
    """Every difference between two images, registers first, then memory, then the rest."""
    recs = _record_findings(g, t, labels)
    order = {"registers": 0, "memory": 1}
    found = sorted(recs, key=lambda f: order.get(f.category, 2))
    mem = _memory_findings(g, t, labels) if memory else []
    regs = [f for f in found if f.category == "registers"]
    rest = [f for f in found if f.category != "registers"]
    return regs + mem + rest


def diff_images(golden: str | os.PathLike[str], thawed: str | os.PathLike[str], *,
                memory: bool = True) -> list[Finding]:
    """diff_states of two image files."""
    return diff_states(load_state(golden), load_state(thawed), memory=memory)
