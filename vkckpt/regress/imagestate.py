"""An image read back as comparable state: records by (type, key), memory by buffer and page.

`load_state` follows an incremental chain for the pages; `instruction_at` disassembles guest
code from the image's own page data (for bisect's report of the diverging thread).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from vkckpt.abi.mman import PAGE
from vkckpt.ckpt.restore import load_chain
from vkckpt.ckpt.snapshot import RECORD_VERSIONS


def _key(rtype: str, f: dict) -> object:
    """The key that tells records of one type apart (None: one record of its type)."""
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
        """pid's VMAs as saved: [start, end, prot, flags, name, bid, offset, ...]."""
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
