"""Find where a thawed run leaves the golden run, and say which state differs there.

`bisect` binary-searches the golden run's scheduling points after the freeze point, rebuilding
both runs in this process for every probe and comparing state digests.  At the first point
that differs it writes an image of each run and `diff_states` compares them record by record:
registers (thread, name, both values), memory (the VMA address ranges whose pages differ),
descriptors, signal state, the scheduler; `instruction_at` disassembles the instruction at the
diverging thread's rip from the image's own page data.

The search assumes that once the runs differ they stay different (state carries forward: the
tick count alone makes that true for any divergence in control flow).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import msgpack

from vkckpt.abi.mman import PAGE
from vkckpt.ckpt.restore import load_chain
from vkckpt.ckpt.snapshot import RECORD_VERSIONS, write_image

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel

MAX_FINDINGS = 40        # per report
MAX_PER_RECORD = 12      # field differences listed per record


# -- digests -----------------------------------------------------------------------------------

def _normalized(rtype: str, fields: dict) -> dict:
    """Fields with host-only values removed: an open file's fingerprint mtime is the host's
    clock at the last write (thaw uses it to detect changed files; the guest never sees it)."""
    if rtype == "file" and isinstance(fields.get("fingerprint"), dict):
        fields = {**fields, "fingerprint": {**fields["fingerprint"], "mtime_ns": None}}
    return fields


def image_digest(path: str | os.PathLike[str], *, memory: bool = True) -> str:
    """SHA-256 over a full image's records (normalized; pages only when memory is True)."""
    h = hashlib.sha256()
    r = load_chain(str(path))[-1]
    if r.header.incremental:
        raise ValueError(f"{path}: digests are taken of full images only")
    for rec in r.records(RECORD_VERSIONS):
        if rec.type == "pages":
            if memory:
                f = rec.fields
                h.update(msgpack.packb([f["buf"], f["first"], f["count"]]))
                h.update(r.pages(rec))
        elif rec.type != "meta":
            h.update(msgpack.packb([rec.type, rec.version, _normalized(rec.type, rec.fields)],
                                   use_bin_type=True))
    return h.hexdigest()


def state_digest(k: VKernel, tmp: Path, *, memory: bool = True) -> str:
    """Digest of k's whole state (a full image of it, normalized); k is left as it was."""
    path = tmp / f"digest-{os.getpid()}-{id(k)}.img"
    try:
        write_image(k, str(path))  # no chain: k's own images are untouched
        return image_digest(path, memory=memory)
    finally:
        path.unlink(missing_ok=True)


# -- images as comparable state ----------------------------------------------------------------

def _key(rtype: str, f: dict) -> object:
    keyfield = {"buffer": "bid", "pipe": "id", "file": "id", "process": "pid",
                "vmspace": "pid", "thread": "tid"}.get(rtype)
    if keyfield:
        return f.get(keyfield)
    if rtype == "waitq":
        return repr(f.get("key"))
    return None


@dataclass
class ImageState:
    """An image's records by (type, key) and its memory as bid -> page -> bytes."""

    path: str
    recs: dict[str, dict[object, dict]]
    pages: dict[int, dict[int, bytes]]

    def vmas(self, pid: int) -> list[list]:
        return (self.recs.get("vmspace", {}).get(pid) or {}).get("vmas", [])

    def read(self, pid: int, addr: int, size: int) -> bytes | None:
        """Guest memory of pid at addr (None when unmapped)."""
        out = b""
        while size > 0:
            v = next((v for v in self.vmas(pid) if v[0] <= addr < v[1]), None)
            if v is None:
                return out or None
            boff = v[6] + addr - v[0]
            page, inpage = divmod(boff, PAGE)
            n = min(size, PAGE - inpage, v[1] - addr)
            data = self.pages.get(v[5], {}).get(page, bytes(PAGE))
            out += data[inpage:inpage + n]
            addr, size = addr + n, size - n
        return out


def load_state(path: str | os.PathLike[str]) -> ImageState:
    """Read an image (following its incremental chain for the pages)."""
    chain = load_chain(str(path))
    recs: dict[str, dict[object, dict]] = {}
    pages: dict[int, dict[int, bytes]] = {}
    for r in chain:
        final = r is chain[-1]
        for rec in r.records(RECORD_VERSIONS):
            if rec.type == "pages":
                data, f = r.pages(rec), rec.fields
                mp = pages.setdefault(f["buf"], {})
                for i in range(f["count"]):
                    mp[f["first"] + i] = data[i * PAGE:(i + 1) * PAGE]
            elif rec.type == "zero_pages":
                mp = pages.setdefault(rec.fields["buf"], {})
                for a, b in rec.fields["ranges"]:
                    for p in range(a, b):
                        mp.pop(p, None)
            elif final and rec.type != "meta":
                fields = rec.fields
                if rec.type == "kernel":  # the root hint says where the image was written
                    fields = {k: v for k, v in fields.items() if k != "root"}
                recs.setdefault(rec.type, {})[_key(rec.type, rec.fields)] = fields
    return ImageState(str(path), recs, pages)


# -- differences -------------------------------------------------------------------------------

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
_PROCESS_CAT = {"pending": "signals", "actions": "signals", "fds": "fds"}
_KERNEL_CAT = {"ticks": "scheduler", "idle_ns": "scheduler", "timer_seq": "scheduler",
               "runq": "scheduler", "timers": "scheduler", "sleep_seq": "scheduler",
               "quantum": "scheduler"}
_TYPE_CAT = {"file": "fds", "pipe": "fds", "waitq": "scheduler", "vmspace": "memory",
             "buffer": "memory"}


def _category(rtype: str, top: str) -> str:
    if rtype == "thread":
        return _THREAD_CAT.get(top, "threads")
    if rtype == "process":
        return _PROCESS_CAT.get(top, "process")
    if rtype == "kernel":
        return _KERNEL_CAT.get(top, "kernel")
    return _TYPE_CAT.get(rtype, rtype)


def _show(v: object) -> str:
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, int):
        return f"{v:#x}" if abs(v) > 9 else str(v)
    if isinstance(v, bytes):
        return "0x" + v[::-1].hex() if len(v) <= 16 else f"<{len(v)} bytes>"
    s = repr(v)
    return s if len(s) <= 120 else s[:117] + "..."


def _walk(a: object, b: object, path: list[str]) -> Iterable[tuple[list[str], object, object]]:
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
    if rtype == "thread":
        return f"thread {key} (pid {f.get('pid')})"
    if rtype in ("process", "vmspace"):
        return f"{'process' if rtype == 'process' else 'address space of'} pid {key}"
    if rtype == "kernel":
        return "kernel"
    return f"{rtype} {key}"


def _record_findings(g: ImageState, t: ImageState, labels: tuple[str, str]
                     ) -> list[Finding]:
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
            for n, (path, x, y) in enumerate(_walk(_normalized(rtype, a),
                                                   _normalized(rtype, b), [])):
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
    return "".join(c if p & bit else "-" for c, bit in (("r", 1), ("w", 2), ("x", 4)))


def _memory_findings(g: ImageState, t: ImageState, labels: tuple[str, str]
                     ) -> list[Finding]:
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
    return diff_states(load_state(golden), load_state(thawed), memory=memory)


# -- disassembly -------------------------------------------------------------------------------

def instruction_at(state: ImageState, pid: int, addr: int) -> str:
    """The x86-64 instruction at addr in pid's memory, from the image's page data."""
    from capstone import CS_ARCH_X86, CS_MODE_64, Cs

    code = state.read(pid, addr, 16)
    if not code:
        return f"{addr:#x}: (not mapped)"
    md = Cs(CS_ARCH_X86, CS_MODE_64)
    for insn in md.disasm(code, addr):
        return f"{addr:#x}: {insn.bytes.hex(' '):<24} {insn.mnemonic} {insn.op_str}".rstrip()
    return f"{addr:#x}: {code[:8].hex(' ')} (does not decode)"


def diverging_thread(g: ImageState, t: ImageState) -> int | None:
    """The thread to show: the first whose registers differ, else the next to run."""
    gt, tt = g.recs.get("thread", {}), t.recs.get("thread", {})
    for tid in sorted(set(gt) & set(tt)):
        if gt[tid].get("regs") != tt[tid].get("regs"):
            return tid
    runq = (g.recs.get("kernel", {}).get(None) or {}).get("runq") or []
    for tid in runq:
        if tid in tt:
            return tid
    return min(tt) if tt else (min(gt) if gt else None)


def instructions(g: ImageState, t: ImageState, tid: int) -> list[str]:
    """Disassembly at the thread's rip in the thawed image (and in the golden one if its rip
    differs)."""
    lines = []
    for label, st in (("thawed", t), ("golden", g)):
        rec = st.recs.get("thread", {}).get(tid)
        if rec is None:
            continue
        rip = rec["regs"]["rip"]
        text = instruction_at(st, rec["pid"], rip)
        if lines and lines[-1].endswith(text):
            continue
        lines.append(f"{label} thread {tid} (pid {rec['pid']}) at rip {text}")
    return lines


# -- the search --------------------------------------------------------------------------------

Runner = Callable[[int], "tuple[VKernel, int | None]"]


@dataclass
class Probe:
    """How to rebuild both runs at any scheduling point (fresh kernels every call)."""

    golden_at: Runner      # run the golden run to the first scheduling point >= tick
    thawed_at: Runner      # thaw the image and run it to the first scheduling point >= tick
    points: list[int]      # the golden run's scheduling points from the freeze point on
    workdir: Path
    memory: bool = True    # False: page data is host-dependent for this workload
    known_bad: int | None = None  # a tick already seen to differ (None: only the end did)
    log: Callable[[str], None] = lambda s: None


@dataclass
class BisectResult:
    first: int | None            # first diverging scheduling point (None: only the end)
    last_same: int | None        # the point before it where the runs were identical
    probes: int
    findings: list[Finding] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)
    images: tuple[str, str] | None = None
    note: str = ""

    def text(self) -> str:
        lines = []
        if self.first is None:
            lines.append(f"bisect: {self.probes} probes; the state is identical at every "
                         f"scheduling point up to tick {self.last_same}: the runs differ only "
                         "after the last scheduling point")
        else:
            at = ("the freeze point itself: the state differs right after the thaw"
                  if self.last_same is None else
                  f"last identical scheduling point: tick {self.last_same}")
            lines.append(f"bisect: {self.probes} probes; first diverging scheduling point: "
                         f"tick {self.first} ({at})")
        if self.note:
            lines.append(self.note)
        if self.findings:
            cats = sorted({f.category for f in self.findings})
            lines.append(f"state that differs at tick {self.first} (golden vs thawed; "
                         f"{', '.join(cats)}):")
            shown = self.findings[:MAX_FINDINGS]
            lines += [f"  {f.category}: {f.text}" for f in shown]
            if len(self.findings) > len(shown):
                lines.append(f"  ... and {len(self.findings) - len(shown)} more")
        lines += [f"  instruction: {s}" for s in self.instructions]
        if self.images:
            lines.append(f"  images: golden {self.images[0]}  thawed {self.images[1]}")
        return "\n".join(lines)


def _state(run: Runner, q: int, tmp: Path, memory: bool) -> tuple:
    k, status = run(q)
    try:
        if status is not None:
            return ("ended", status, k.sched.ticks)
        return ("running", state_digest(k, tmp, memory=memory), k.sched.ticks)
    finally:
        k.shutdown()


def bisect(p: Probe) -> BisectResult:
    """Narrow a divergence to the first scheduling point where the states differ."""
    pts = p.points
    tmp = p.workdir
    tmp.mkdir(parents=True, exist_ok=True)
    probes = 0

    def same(i: int) -> bool:
        nonlocal probes
        probes += 1
        q = pts[i]
        g = _state(p.golden_at, q, tmp, p.memory)
        t = _state(p.thawed_at, q, tmp, p.memory)
        p.log(f"probe tick {q}: {'same' if g == t else 'differs'}")
        return g == t

    if not pts or not same(0):
        first: int | None = 0 if pts else None
        last = None
    else:
        lo, hi = 0, len(pts)
        if p.known_bad is not None and p.known_bad in pts[1:]:
            i = pts.index(p.known_bad)
            if not same(i):
                hi = i
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if same(mid):
                lo = mid
            else:
                hi = mid
        first, last = (hi if hi < len(pts) else None), pts[lo]
    if first is None:
        return BisectResult(None, last, probes)
    q = pts[first]
    res = BisectResult(q, last, probes)
    gk, gst = p.golden_at(q)
    gi = tmp / f"golden-{q}.img"
    write_image(gk, str(gi))
    gk.shutdown()
    tk, tst = p.thawed_at(q)
    ti = tmp / f"thawed-{q}.img"
    if tst is not None:
        res.note = (f"the thawed run ended at tick {tk.sched.ticks} with wait status {tst:#x} "
                    f"(golden: {'ended ' + hex(gst) if gst is not None else 'still running'})")
    try:
        write_image(tk, str(ti))
    except Exception as exc:  # an ended kernel may not be writable
        res.note += f"; no image of the thawed run ({exc})"
        tk.shutdown()
        return res
    tk.shutdown()
    g, t = load_state(gi), load_state(ti)
    res.findings = diff_states(g, t, memory=p.memory)
    if not p.memory:
        res.note += ("" if not res.note else "; ") + ("memory is not compared for this "
                                                        "workload (it holds host file metadata)")
    tid = diverging_thread(g, t)
    if tid is not None:
        res.instructions = instructions(g, t, tid)
    res.images = (str(gi), str(ti))
    return res
