"""/proc's system files: cpuinfo, meminfo, uptime, loadavg, stat, mounts, version, sys/.

Each generator takes the view (procfs.ProcView) and the reading process.  The machine is the
vkernel's: one virtual CPU (engine/cpumodel.py's CPUID facts, handed over in the view), the
memory limit as RAM (what sysinfo(2) reports), the virtual clock, uname(2)'s names.
"""

from __future__ import annotations

import struct

from vkckpt.abi import uts
from vkckpt.vclock import EPOCH_NS

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.procfs import ProcView
    from vkckpt.process import Process

_CLOCK_TICK_NS = 10**7  # USER_HZ 100
#: Linux's names for CPUID feature bits where they differ from the vendor's.
_FLAG_NAMES = {"sse3": "pni"}
#: The CPUID words in the order Linux's cpufeatures.h lists them.
_FLAG_WORDS = ((1, "edx"), (0x80000001, "edx"), (0x80000007, "edx"), (1, "ecx"),
               (0x80000001, "ecx"))
_REG = {"eax": 0, "ebx": 1, "ecx": 2, "edx": 3}
BOOT_ID = "6b1c4f0e-9d3a-4c57-8e21-5f0a7b6c3d42"  # fixed: every run boots the same machine


def _flags(view: ProcView) -> list[str]:
    names = []
    for leaf, reg in _FLAG_WORDS:
        value = view.cpuid(leaf, 0)[_REG[reg]]
        for name, bit in sorted(view.cpu_features.get((leaf, reg), {}).items(),
                                key=lambda kv: kv[1]):
            if value >> bit & 1:
                if name == "invariant_tsc":
                    names += ["constant_tsc", "nonstop_tsc"]
                else:
                    names.append(_FLAG_NAMES.get(name, name))
    return names


def cpuinfo(view: ProcView, me: Process) -> bytes:
    """Implement /proc/cpuinfo for the one virtual CPU, from the CPUID leaves guests see."""
    c = view.cpuid
    sig = c(1, 0)[0]
    family, model = (sig >> 8) & 0xF, ((sig >> 4) & 0xF) | ((sig >> 12) & 0xF0)
    vendor = struct.pack("<III", c(0, 0)[1], c(0, 0)[3], c(0, 0)[2]).decode()
    brand = b"".join(struct.pack("<4I", *c(0x80000002 + i, 0)) for i in range(3))
    l2_kb = c(0x80000006, 0)[2] >> 16
    bits = c(0x80000008, 0)[0]
    rows = [
        ("processor", "0"), ("vendor_id", vendor), ("cpu family", str(family)),
        ("model", str(model)), ("model name", brand.rstrip(b"\0").decode()),
        ("stepping", str(sig & 0xF)), ("microcode", "0x1"), ("cpu MHz", "3000.000"),
        ("cache size", f"{l2_kb} KB"), ("physical id", "0"), ("siblings", "1"),
        ("core id", "0"), ("cpu cores", "1"), ("apicid", "0"), ("initial apicid", "0"),
        ("fpu", "yes"), ("fpu_exception", "yes"), ("cpuid level", str(c(0, 0)[0])),
        ("wp", "yes"), ("flags", " ".join(_flags(view))), ("bugs", ""),
        ("bogomips", "6000.00"), ("clflush size", "64"), ("cache_alignment", "64"),
        ("address sizes", f"{bits & 0xFF} bits physical, {bits >> 8 & 0xFF} bits virtual"),
    ]
    text = "".join(f"{k}\t: {v}\n" if len(k) >= 8 else f"{k}\t\t: {v}\n" for k, v in rows)
    return (text.replace(" \n", "\n") + "power management:\n\n").encode()


def _free(view: ProcView, me: Process) -> int:
    """Free memory as sysinfo(2) reports it to the same process."""
    mapped = me.vm.mapped_bytes if me.vm is not None else 0
    return max(0, view.mem_limit - mapped)


def meminfo(view: ProcView, me: Process) -> bytes:
    """Implement /proc/meminfo: the vkernel's memory limit as RAM, no swap."""
    total, free = view.mem_limit, _free(view, me)
    kb = {"MemTotal": total, "MemFree": free, "MemAvailable": free, "Buffers": 0,
          "Cached": 0, "SwapCached": 0, "Active": total - free, "Inactive": 0,
          "SwapTotal": 0, "SwapFree": 0, "Dirty": 0, "Writeback": 0,
          "AnonPages": total - free, "Mapped": 0, "Shmem": 0, "KReclaimable": 0,
          "Slab": 0, "SReclaimable": 0, "SUnreclaim": 0, "KernelStack": 0,
          "PageTables": 0, "CommitLimit": total, "Committed_AS": total - free,
          "VmallocTotal": 34359738367 * 1024, "VmallocUsed": 0, "HugePages_Total": None,
          "HugePages_Free": None, "Hugepagesize": 2 << 20}
    lines = []
    for name, v in kb.items():
        label = f"{name}:"
        lines.append(f"{label:<16}{0:8d}" if v is None else f"{label:<16}{v // 1024:8d} kB")
    return ("\n".join(lines) + "\n").encode()


def uptime(view: ProcView, me: Process) -> bytes:
    """Implement /proc/uptime: virtual seconds since boot, and the idle time within."""
    now, idle = view.now_ns(), view.idle_ns()
    return f"{now // 10**7 / 100:.2f} {idle // 10**7 / 100:.2f}\n".encode()


def _threads(view: ProcView) -> tuple[int, int]:
    """(runnable, all) live threads of the vkernel."""
    live = [t for p in view.procs.values() if not p.zombie for t in p.live_threads]
    return sum(1 for t in live if t.state.value == "runnable"), len(live)


def loadavg(view: ProcView, me: Process) -> bytes:
    """Implement /proc/loadavg: no load (as sysinfo says), runnable/all threads, last pid."""
    running, total = _threads(view)
    return f"0.00 0.00 0.00 {running}/{total} {view.last_pid()}\n".encode()


def stat(view: ProcView, me: Process) -> bytes:
    """Implement /proc/stat: the one CPU's virtual busy and idle time, boot at the epoch."""
    idle = view.idle_ns() // _CLOCK_TICK_NS
    user = view.now_ns() // _CLOCK_TICK_NS - idle
    cpu = f"{user} 0 0 {idle} 0 0 0 0 0 0"
    running, _ = _threads(view)
    lines = [f"cpu  {cpu}", f"cpu0 {cpu}", "intr 0", "ctxt 0", f"btime {EPOCH_NS // 10**9}",
             f"processes {view.last_pid()}", f"procs_running {running}", "procs_blocked 0",
             "softirq 0 0 0 0 0 0 0 0 0 0 0"]
    return ("\n".join(lines) + "\n").encode()


ROOT_MNT_ID, PROC_MNT_ID = 21, 22
ANON_MNT_ID = 13  # pipefs and anon_inodefs: internal mounts, never listed


def _mount_rows(view: ProcView) -> list[tuple[int, str, str, str, str]]:
    """(mount id, mount point, fs type, source, options) of the guest namespace."""
    rows = [(ROOT_MNT_ID, "/", "ext4", "/dev/root", "rw,relatime"),
            (PROC_MNT_ID, "/proc", "proc", "proc", "rw,nosuid,nodev,noexec,relatime")]
    for i, (guest, ro) in enumerate(view.mounts):
        rows.append((PROC_MNT_ID + 1 + i, guest, "ext4", "/dev/root",
                     ("ro" if ro else "rw") + ",relatime"))
    return rows


def mounts(view: ProcView, me: Process) -> bytes:
    """Implement /proc/mounts (and /proc/PID/mounts): the root, /proc and each bind."""
    return "".join(f"{src} {mp} {fs} {opts} 0 0\n"
                   for _, mp, fs, src, opts in _mount_rows(view)).encode()


def mountinfo(view: ProcView, me: Process) -> bytes:
    """Implement /proc/PID/mountinfo (binds show their own top as the root, "/")."""
    out = []
    for mid, mp, fs, src, opts in _mount_rows(view):
        parent = 1 if mid == ROOT_MNT_ID else ROOT_MNT_ID
        dev = "0:22" if fs == "proc" else "8:1"
        out.append(f"{mid} {parent} {dev} / {mp} {opts} - {fs} {src} {opts.split(',')[0]}\n")
    return "".join(out).encode()


def filesystems(view: ProcView, me: Process) -> bytes:
    return b"nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\nnodev\tpipefs\n\text4\n"


def version(view: ProcView, me: Process) -> bytes:
    """Implement /proc/version, agreeing with uname(2)."""
    return (f"{uts.SYSNAME} version {uts.RELEASE} (vkckpt@{uts.NODENAME}) (vkckpt) "
            f"{uts.VERSION}\n").encode()


def random_uuid(view: ProcView, me: Process) -> bytes:
    """/proc/sys/kernel/random/uuid: a version-4 UUID from the guest random stream."""
    b = bytearray(view.random_bytes(16))
    b[6] = b[6] & 0x0F | 0x40
    b[8] = b[8] & 0x3F | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}\n".encode()


def _const(text: str):  # noqa: ANN202 - a generator of fixed text
    return lambda view, me: text.encode()


#: /proc/sys as a tree: a dict is a directory, anything else a file's generator.
SYS_TREE: dict = {
    "kernel": {
        "osrelease": _const(uts.RELEASE + "\n"), "ostype": _const(uts.SYSNAME + "\n"),
        "hostname": _const(uts.NODENAME + "\n"), "domainname": _const(uts.DOMAINNAME + "\n"),
        "version": _const(uts.VERSION + "\n"), "pid_max": _const(f"{uts.PID_MAX}\n"),
        "ngroups_max": _const("65536\n"),
        "random": {"boot_id": _const(BOOT_ID + "\n"), "uuid": random_uuid},
    },
    "vm": {"overcommit_memory": _const("0\n")},
}

#: The files in /proc itself.
SYSTEM_FILES = {"cpuinfo": cpuinfo, "meminfo": meminfo, "uptime": uptime, "loadavg": loadavg,
                "stat": stat, "mounts": mounts, "filesystems": filesystems,
                "version": version}
