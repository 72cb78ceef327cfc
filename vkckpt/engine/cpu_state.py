"""The saved form of the virtual CPU (engine/cpumodel.py): a `cpu` record in every image,
and the check a thaw makes against the CPU this vkckpt gives.

Guests read the CPU once and act on it: a C library picks its string functions by the CPUID
feature bits at start-up, a JIT emits the instructions they promise, a program times itself
with the TSC.  So a thaw refuses (ImageError) a difference that can break a guest that
already looked:
  * a feature bit the image's CPU reported that this one lacks (its instructions may raise
    SIGILL now);
  * another emulator model (`UC_MODEL`: what executes), or another TSC rate or TSC_AUX
    (the TSC would jump).
Every other difference is harmless and thaws: feature bits this CPU adds (a guest only uses
what it saw), the vendor, brand and signature, cache and address-size leaves (read for
display and sizing only).  An image without the record (format 1.0, 1.1) was written by a
vkckpt whose CPU is this one.  The record is optional: a 1.1 reader skips it.
"""

from __future__ import annotations

from vkckpt.engine import cpumodel as M
from vkckpt.errors import ImageError

CPU_VERSION = 1
SCHEMA = {"uc_model": "u32", "tsc_per_ns": "u32", "tsc_aux": "u32",
          "leaves": [("u32", "u32", "u32", "u32", "u32", "u32")]}
RECORDS = {"cpu": (CPU_VERSION, SCHEMA)}
MAX_LEAVES = 256
_REGS = ("eax", "ebx", "ecx", "edx")


def save() -> dict:
    """The CPU every guest of this vkckpt sees: its CPUID leaves (leaf, subleaf, EAX, EBX,
    ECX, EDX, in leaf order), the emulator model and the TSC."""
    return {"uc_model": M.UC_MODEL, "tsc_per_ns": M.TSC_PER_NS, "tsc_aux": M.TSC_AUX,
            "leaves": [[leaf, sub, *regs] for (leaf, sub), regs in sorted(M.LEAVES.items())]}


def check(rows: list[dict]) -> None:
    """ImageError naming every difference between the image's CPU and this one that could
    change what a guest does; nothing when there is none (or no record)."""
    if not rows:
        return
    if len(rows) > 1:
        raise ImageError(f"image must hold at most one cpu record, found {len(rows)}")
    d = rows[0]
    if len(d["leaves"]) > MAX_LEAVES:
        raise ImageError(f"the cpu record holds more than {MAX_LEAVES} CPUID leaves")
    leaves: dict[tuple[int, int], list[int]] = {}
    for row in d["leaves"]:
        if (row[0], row[1]) in leaves:
            raise ImageError(f"the cpu record gives CPUID leaf {row[0]:#x}.{row[1]} twice")
        leaves[(row[0], row[1])] = row[2:]
    problems = []
    if d["uc_model"] != M.UC_MODEL:
        problems.append(f"emulator CPU model {d['uc_model']} (this vkckpt runs {M.UC_MODEL}, "
                        f"{M.UC_MODEL_NAME})")
    if (d["tsc_per_ns"], d["tsc_aux"]) != (M.TSC_PER_NS, M.TSC_AUX):
        problems.append(f"TSC at {d['tsc_per_ns']} GHz, TSC_AUX {d['tsc_aux']} (this vkckpt: "
                        f"{M.TSC_PER_NS} GHz, {M.TSC_AUX})")
    lost = missing_features(leaves)
    if lost:
        problems.append("features this vkckpt's CPU lacks: " + ", ".join(lost))
    if problems:
        raise ImageError("the image's virtual CPU differs from this vkckpt's in what its "
                         "guests may rely on: " + "; ".join(problems))


def missing_features(leaves: dict[tuple[int, int], list[int]]) -> list[str]:
    """The feature bits the image's CPUID leaves report and this CPU does not, by name
    ("leaf.reg bit N" for a bit the model has no name for)."""
    lost = []
    for (leaf, reg), names in M.FEATURES.items():
        i = _REGS.index(reg)
        theirs = leaves.get((leaf, 0), [0, 0, 0, 0])[i]
        ours = M.cpuid(leaf, 0)[i]
        gone = theirs & ~ours
        by_bit = {bit: name for name, bit in names.items()}
        lost += [by_bit.get(b, f"{leaf:#x}.{reg} bit {b}") for b in range(32) if gone >> b & 1]
    return lost
