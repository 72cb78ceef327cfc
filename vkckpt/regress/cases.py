"""What `vkckpt regress` runs: the workloads, the kinds of case, and the two profiles.

A *case* is one workload exercised one way (its *kind*; kinds/ runs each, its KINDS table
names them):

    points        freeze at K scheduling points of the golden run; thaw each image in a fresh
                  host process; compare output, statuses, ticks and state digests
    iterated      freeze, thaw (fresh process) and freeze again later from the thawed kernel,
                  N times; the last thaw runs to the end; every image must equal the golden
                  state at its tick and the end must equal the golden end
    chain         a chain of N images: a full one, then incremental ones every M ticks, the
                  last written by a kernel thawed from the one before; the last two links
                  are thawed in fresh processes
    ckpt-signals  the freeze protocol with SIGCKPT/SIGTHAW handlers (guest ckpt_signals)
    ckpt-self     checkpoint(2) from inside the guest (guest ckpt_self, self and external)
    fixture       images of older format versions kept in tests/data, thawed by this vkckpt

Everything is deterministic for a given profile and seed.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from vkckpt.guests.build import guest_names
from vkckpt.testing.compat_cases import CASES as COMPAT_CASES
from vkckpt.testing.workload import Workload

QUANTUM = 997  # small slices: dense scheduling (freeze) points

#: Every workload the full profile runs, by name.  Quantum 997 unless the program is shorter
#: than a few slices (then a smaller quantum still gives it several freeze points).
WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Workload("hello", ("a", "b c"), quantum=101, env=(("HELLO_GREETING", "hi"),)),
    Workload("pthreads", quantum=QUANTUM),        # mutex, condvar, TLS, futex waits
    Workload("mutex_bench", quantum=QUANTUM),     # 4 threads contending on one mutex
    Workload("demo", quantum=QUANTUM),            # barriers, TLS, output between rounds
    Workload("compute", ("1",), quantum=QUANTUM),  # pure CPU work over a 16 KiB array
    Workload("compute_mt", ("3",), quantum=QUANTUM),  # threads computing without syscalls
    Workload("compute_fork", ("2", "1", "sig"), quantum=20_000),  # parallel rounds, signals
    Workload("getppid_loop", ("20000",), quantum=QUANTUM),  # a syscall in a tight loop
    Workload("memtouch", ("8", "4", "2", "100"), quantum=QUANTUM),  # 4 MiB touched, sparse
                                                                    # changes, sleeps
    Workload("spawner", ("6", "3", "3"), quantum=QUANTUM),  # 6 processes x 3 threads, pipes
    Workload("forkpipe", quantum=QUANTUM),        # fork, pipes, wait4, a killed child
    Workload("pollpipes", quantum=QUANTUM),       # poll over several pipes, ppoll's mask
    Workload("epolls", ("work",), quantum=QUANTUM),  # epoll items, ready lists, sleeping waits
    Workload("eventfds", quantum=QUANTUM),        # eventfd counters, select/pselect6 sleeps
    Workload("reclocks", ("work",), quantum=QUANTUM),  # file locks held, waited for, EDEADLK
    Workload("timerfds", quantum=QUANTUM),        # armed timerfds, sleeps until they expire
    Workload("signalfds", quantum=QUANTUM),       # signalfd masks, reads woken by signals
    Workload("itimers", quantum=QUANTUM),         # ITIMER_REAL/VIRTUAL/PROF, alarm, execve
    Workload("ptimers", quantum=QUANTUM),         # POSIX timers: signals, threads, overruns
    Workload("unixpair", quantum=QUANTUM),        # socketpairs, SCM_RIGHTS, EPIPE/SIGPIPE
    Workload("unixserver", ("work",), quantum=QUANTUM),  # listeners, accept queues, epoll
    Workload("unixdgram", ("work",), quantum=QUANTUM),   # datagram queues, seqpacket
    Workload("unixgc", quantum=QUANTUM),          # in-flight socket cycles garbage collected
    Workload("tcploop", quantum=QUANTUM),         # loopback TCP: accept loop, RST, v4-mapped
    Workload("sockedge", ("work",), quantum=QUANTUM),  # TCP and AF_UNIX edges as Linux
    Workload("udploop", quantum=QUANTUM),         # loopback UDP: datagrams, ECONNREFUSED
    Workload("netbench", quantum=QUANTUM),        # TCP connect waiting on a full backlog
    Workload("bigwrite", quantum=QUANTUM),        # blocking writes that wait until all went
    Workload("ghosts", ("work",), quantum=QUANTUM),  # open unlinked files saved with their bytes
    Workload("sigwait", quantum=QUANTUM),         # sigwait/sigtimedwait, a signal thread
    Workload("execer", quantum=QUANTUM),          # fork + execve + wait
    Workload("forkwait", ("30",), quantum=QUANTUM),  # 30 children alive at once, waited for
    Workload("spawn", ("/hello",), quantum=QUANTUM),  # posix_spawn (CLONE_VFORK), vfork
    Workload("files", ("work",), quantum=QUANTUM),  # descriptors, offsets, directories
    Workload("mmaps", ("work",), quantum=QUANTUM),  # VMAs split/protected, SIGSEGV, brk
    Workload("shmfile", ("work",), quantum=QUANTUM),  # MAP_SHARED file pages, SIGBUS past EOF
    Workload("signals", quantum=QUANTUM),         # handlers, masks, sigaltstack, FP state
    Workload("segfault", quantum=37),             # dies of SIGSEGV after the thaw
    Workload("ckpt_signals", ("4",), quantum=QUANTUM),  # SIGCKPT/SIGTHAW handlers
    Workload("cpufacts", ("3000",), quantum=QUANTUM),  # rdtsc, rdtscp, CPUID, rdrand, auxv
    Workload("dynelf", ("work",), quantum=QUANTUM),  # auxv, execve of itself (static here)
    Workload("metacalls", ("work",), quantum=QUANTUM),  # owners, xattrs, named FIFOs, chroot
    Workload("procread", ("work",), quantum=QUANTUM),  # /proc/self files, fd/ and task/
    Workload("rlimits", quantum=97),              # limits changed, inherited, enforced
    # Go programs (Debian's go 1.19): runtime threads, futexes, epoll, SIGURG preemption
    Workload("gocompute", quantum=5_000, env=(("GOMAXPROCS", "4"),)),  # goroutines, channels
    Workload("gotimers", quantum=5_000),          # sleeps, tickers, timeouts on the clock
    Workload("gofiles", ("work",), quantum=5_000),  # files, pipes between goroutines, bufio
    Workload("gogc", quantum=20_000),             # GC cycles, finalizers, 64 MiB live
    Workload("goexec", quantum=5_000),            # os/exec children, pipes, SIGCHLD
    Workload("gosignals", quantum=3_000),         # os/signal, recovered faults, SIGTERM
    Workload("gohttp", quantum=5_000),            # net/http server and client, loopback TCP
)}

#: Workloads whose guest memory would hold host-specific bytes, so their state digests skip
#: page data. Empty since stat(2)/getdents(2) show virtual inodes and virtual-clock times.
HOST_METADATA: dict[str, str] = {}

#: Other guests a workload's root must hold (programs it executes).
NEEDS: dict[str, tuple[str, ...]] = {"spawn": ("hello",), "goexec": ("hello",)}

#: Bundled guests the regression suite does not run, and why.  A new guest must be added to
#: WORKLOADS or here (tests/test_regress.py checks it).
EXCLUDED: dict[str, str] = {
    "badptr": "bad-pointer syscall surface: tests/test_hostile_guests.py (natively diffed)",
    "bombs": "resource exhaustion: tests/test_hostile_guests.py",
    "limits": "host resource attacks: tests/test_limits.py",
    "crashers": "fatal CPU exceptions: tests/test_hostile_guests.py; segfault covers a fatal "
                "signal after a thaw",
    "escape": "needs a secret planted outside the root: tests/test_sandbox_guest.py",
    "hostpaths": "attacks the host's opens (needs host targets): tests/test_hostpaths.py",
    "stuck": "deadlocks on purpose (never reaches an end to compare)",
    "layers": "needs --fs overlay and a prepared lower layer: tests/test_overlay.py (diffed "
              "against the host, frozen at several points)",
    "pubserver": "serves host connections through --publish (not deterministic): "
                 "tests/test_publish.py",
    "ckpt_self": "run by the ckpt-self cases (it checkpoints itself)",
    "stdio_kind": "prints what the console looks like (fstat, isatty): "
                  "tests/test_differential.py",
    "fdlinks": "/dev/fd and /dev/stdout against the host's: tests/test_differential.py",
    "renames": "names of renamed open files against the host's: tests/test_differential.py",
    "vforkchld": "signal timing around vfork against the host's: tests/test_differential.py",
    "fsmeta": "file metadata against the host's: tests/test_differential.py",
    "copyfile": "sendfile/copy_file_range results against the host's: "
                "tests/test_differential.py",
    "goruntime": "edge cases of the Go runtime's system calls against the host's: "
                 "tests/test_differential.py",
}


@dataclass(frozen=True)
class Case:
    """One regression case (picklable: cases run in worker processes with --jobs)."""

    name: str
    kind: str
    workload: Workload | None = None
    points: int = 0          # points, ckpt-signals: how many freeze points
    iters: int = 0           # iterated: checkpoints in the sequence
    chain: int = 0           # chain: images in the incremental chain
    mode: str = ""           # ckpt-self: "self" or "external"
    image: str = ""          # fixture: the image file
    compat: str = ""         # compat: the compatibility case, SUITE/NAME

    @property
    def guests(self) -> tuple[str, ...]:
        """Guest programs the case's root holds."""
        if self.kind == "ckpt-self":
            return ("ckpt_self",)
        if self.workload is None:
            return ()
        return (self.workload.name, *NEEDS.get(self.workload.name, ()))

    @property
    def planned(self) -> int:
        """Freeze points the case exercises (the table's points column)."""
        return {"points": self.points, "ckpt-signals": self.points, "iterated": self.iters,
                "chain": self.chain, "compat": self.points}.get(self.kind, 1)


@dataclass(frozen=True)
class Profile:
    """Which cases to build and how deep."""

    name: str
    points: list[str]      # workloads frozen at points
    iterated: list[str]
    chained: list[str]
    npoints: int
    iters: int
    chain: int
    ckpt_self: tuple[str, ...] = ("self", "external")
    compat: tuple[str, ...] = ()  # compatibility cases (SUITE/NAME globs; slow ones never)


QUICK = Profile("quick", points=["pthreads", "mutex_bench", "forkpipe", "execer", "files",
                                 "mmaps", "signals"],
                iterated=["pthreads", "files"], chained=["forkpipe"], npoints=2, iters=3,
                chain=3, ckpt_self=("self",),
                compat=("busybox-sh/trap-signal", "bash/procsub", "sqlite3/wal",
                        "lua5.4/coroutines", "go/gofmt"))
FULL = Profile("full", points=[n for n in WORKLOADS if n != "ckpt_signals"],
               iterated=["pthreads", "mutex_bench", "forkpipe", "files", "mmaps", "signals",
                         "spawner", "shmfile"],
               chained=["pthreads", "compute", "forkpipe", "mmaps", "demo", "memtouch",
                        "shmfile"],
               npoints=8, iters=4,
               chain=6, compat=("*",))


def fixtures_dir() -> Path:
    """tests/data of the source tree this vkckpt runs from."""
    return Path(__file__).resolve().parents[2] / "tests" / "data"


def fixture_cases(directory: Path) -> list[Case]:
    """One case per IMAGE.img that has an IMAGE.expected.yaml beside it."""
    if not directory.is_dir():
        return []
    return [Case(f"fixture/{img.stem}", "fixture", image=str(img))
            for img in sorted(directory.glob("*.img"))
            if img.with_name(f"{img.stem}.expected.yaml").is_file()]


def build_cases(profile: Profile, *, points: int | None = None, iters: int | None = None,
                chain: int | None = None, fixtures: Path | None = None) -> list[Case]:
    """The profile's cases, with --points/--iters/--chain overrides applied."""
    k = profile.npoints if points is None else points
    n = profile.iters if iters is None else iters
    m = profile.chain if chain is None else chain
    cases = [Case(f"{w}/points", "points", WORKLOADS[w], points=k) for w in profile.points]
    cases += [Case(f"{w}/iterated", "iterated", WORKLOADS[w], iters=n) for w in profile.iterated]
    cases += [Case(f"{w}/chain", "chain", WORKLOADS[w], chain=m) for w in profile.chained]
    cases.append(Case("ckpt_signals/handlers", "ckpt-signals", WORKLOADS["ckpt_signals"],
                      points=k))
    cases += [Case(f"ckpt_self/{mode}", "ckpt-self", mode=mode) for mode in profile.ckpt_self]
    cases += fixture_cases(fixtures or fixtures_dir())
    cases += [Case(f"compat/{c}", "compat", compat=c, points=min(k, 4))
              for c in compat_ids(profile.compat)]
    return cases


def compat_ids(patterns: tuple[str, ...]) -> list[str]:
    """The compatibility cases (SUITE/NAME) the patterns name, in the suite's order; the
    slow ones are left to `make compat`."""
    ids = [f"{c.suite}/{c.name}" for c in COMPAT_CASES if not c.slow]
    return [i for i in ids if any(fnmatch.fnmatchcase(i, p) for p in patterns)]


def select(cases: list[Case], patterns: list[str]) -> list[Case]:
    """Cases whose name or kind matches any glob pattern (a bare word matches a substring)."""
    if not patterns:
        return cases

    def hit(c: Case, p: str) -> bool:
        if any(ch in p for ch in "*?["):
            return fnmatch.fnmatchcase(c.name, p) or fnmatch.fnmatchcase(c.kind, p)
        return p in c.name or p == c.kind
    return [c for c in cases if any(hit(c, p) for p in patterns)]


def uncovered_guests() -> list[str]:
    """Bundled guests neither run nor excluded with a reason."""
    return [n for n in guest_names() if n not in WORKLOADS and n not in EXCLUDED]
