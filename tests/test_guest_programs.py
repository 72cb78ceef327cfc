"""The bundled guest programs: builder caching and errors, and native runs on the Linux host."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vkckpt.errors import GuestBuildError
from vkckpt.guests import build

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.uname().machine != "x86_64",
    reason="guests run natively only on x86-64 Linux",
)

HELLO_ENV = {"HELLO_GREETING": "bonjour", "HELLO_B": "2", "VKCKPT_TEST_A": "1"}


@dataclass(frozen=True)
class Spec:
    """How to run one guest natively and what it must print."""

    args: tuple[str, ...] = ()
    needs_dir: bool = False  # pass a fresh temporary directory as argv[1]
    env: dict[str, str] = field(default_factory=dict)
    status: int = 0
    lines: tuple[str, ...] = ()  # each must appear as a whole line of stdout
    deterministic: bool = True  # natively too (cpufacts prints the host's TSC and CPUID)
    companions: tuple[str, ...] = ()  # guests copied into its cwd (goexec runs ./hello)


SPECS: dict[str, Spec] = {
    "cpufacts": Spec(  # on the host CPU: only what any x86-64 Linux machine guarantees
        lines=(
            "rdtsc: same block pair increases: 1",
            "thread: tsc after main's: 1",
            "main: tsc after thread's: 1",
            "child: tsc after parent's: 1",
            "parent: child exited 0",
        ),
        deterministic=False,
    ),
    "hello": Spec(
        args=("one", "two words"),
        env=HELLO_ENV,
        lines=(
            "hello from guest",
            "argc=3",
            "argv[1]=one",
            "argv[2]=two words",
            "env HELLO_B=2",
            "env HELLO_GREETING=bonjour",
            "env VKCKPT_TEST_A=1",
            "greeting=bonjour",
            "env count=3",
        ),
    ),
    "pthreads": Spec(
        lines=(
            "counter=80000 (expected 80000)",
            "join return sum=410",
            "tls ok=1",
            "pthreads OK",
        ),
    ),
    "signals": Spec(
        lines=(
            "raise: count=1 signo=10 code=SI_TKILL",
            "handler mask: self=1 sa_mask=1",
            "kill: count=2 signo=10 code=SI_USER pid_ok=1 uid_ok=1",
            "blocked: pending=1 ran_while_blocked=0 ran_after_unblock=1 still_pending=0",
            "sigsuspend: ret=-1 eintr=1 handled=1 mask_restored=1",
            "ignored: handled=0 pending=0",
            "altstack: runs=1 on_alt=1 ss_onstack=1 after_onstack=0 main_on_alt=0",
            "no SA_ONSTACK: runs=2 on_alt=0",
            "resethand: runs=1 reset_to_default=1",
            "signals OK",
        ),
    ),
    "forkwait": Spec(args=("50",), lines=("children=50 status_sum=1225",)),
    "forkpipe": Spec(
        lines=(
            "forkpipe start",
            "child1: exited=1 status=7 signaled=0",
            "child2: exited=0 signaled=1 sig=15",
            "child3: exited=0 signaled=1 sig=9",
            "chain depth 3: status=30",
            "chain depth 0: status=33",
            "chain result=33",
            "forkpipe OK",
        ),
    ),
    "pollpipes": Spec(
        lines=(
            'pipe 1: "child 1 says hi" (revents 0x1)',
            "pipe 0: end of file (revents 0x10)",
            "child 2 exited 12",
            "no reader, bad fd: poll=2 write 0xc bad 0x20",
            "ppoll=-1 errno=Interrupted system call handler=1 usr1 still blocked=1",
            "ppoll timeout=0 handler=0 usr1 still blocked=1",
        ),
    ),
    "sigwait": Spec(
        lines=(
            "sigwait=0 got User defined signal 1",
            "sigwaitinfo=Child process status pid matches=1 code exited=1 status=7",
            "sigtimedwait=-1 errno=Resource temporarily unavailable usr2 handled=1",
            "nanosleep=-1 errno=Interrupted system call rem in (0.9 s, 1 s)=1 usr2 handled=2",
            "sigtimedwait=User defined signal 1 code user=1 usr1 handled=0",
            "thread: sigwait=0 got User defined signal 1",
        ),
    ),
    "execer": Spec(
        lines=(
            "parent: forking",
            "child: argc=3",
            "child: argv[1]=child",
            "child: argv[2]=second arg",
            "child: EXECER_VAR=from-parent",
            "child: HOME=(unset)",
            "parent: child exited=1 status=5",
        ),
    ),
    "files": Spec(
        needs_dir=True,
        lines=(
            "read@7: files",
            "pread@0: HELLO, files",
            "a.txt size after pwrite=104",
            "ls vkckpt-files.d: a.txt b.txt c.txt (3)",
            "ls vkckpt-files.d: a.txt d.txt (2)",
            "/dev/null read=0 write=7",
            "files OK",
        ),
    ),
    "mmaps": Spec(
        needs_dir=True,
        lines=(
            "munmap middle: others_intact=1 hole=MAPERR",
            "mprotect: ro_read=ok ro_write=ACCERR rw_write=ok",
            "map_fixed: replaced_zeroed=1 neighbours_kept=1",
            "brk: grew=1 shrank=1",
            "mmaps OK",
        ),
    ),
    "segfault": Spec(status=-signal.SIGSEGV, lines=("about to segfault",)),
    "compute": Spec(lines=("iterations=5000000",)),
    "getppid_loop": Spec(args=("20000",), lines=("calls=20000", "done")),
    "mutex_bench": Spec(lines=("total=400000",)),
    # benchmark guests (bench/, python -m bench)
    "memtouch": Spec(args=("8", "4", "2", "10"), lines=(
        "touched 1024 pages", "round 1 changed 11 pages", "round 2 changed 11 pages",
        "checksum=b7d220a76726ea48")),
    "compute_mt": Spec(args=("3", "1"), lines=(
        "thread 0 acc=00131212d20b920a", "threads=3 iterations=2500000 total=49f8ed231e94614a")),
    "compute_fork": Spec(args=("2", "1", "sig"), lines=(
        "proc 1: acc=00131996f554d582", "proc 2: acc=00130ebe708f8a1f",
        "parent: usr1=some shared=0000000000000000 bad=0")),
    "spawner": Spec(args=("6", "3", "2"), lines=("all started: 6 processes, 18 threads",
                                                 "children exited=5 bad=0")),
    # hostile guests (tests/test_hostile_guests.py runs every mode natively and under vkckpt)
    "badptr": Spec(args=("null", "edge"), lines=("read[null]: ret=-1 errno=EFAULT",
                                                 "badptr done")),
    "crashers": Spec(args=("handled",), lines=("caught 3 SIGSEGV, blocked after=0",)),
    "bombs": Spec(args=("threads",), lines=("ok",)),
    "limits": Spec(args=("maps", "50"), lines=("maps: ok",)),  # tests/test_limits.py
    "ckpt_signals": Spec(
        args=("5",),
        lines=(
            "handlers installed for 62 and 63",
            "round 4 sum=919857c4",
            "ckpt handler ran 0 times",
            "thaw handler ran 0 times",
        ),
    ),
    "demo": Spec(lines=("round 7: 4 threads agree on 63f414f8d4f009ab", "demo done")),
    # run with stdout captured: a pipe natively, and the vkernel's console says so too
    "stdio_kind": Spec(lines=("fd 1: fifo tty=0 blksize=4096",)),
    "renames": Spec(needs_dir=True, lines=("file after rename: /rn/b.txt",
                                           "file in renamed dir: /rn/e/in.txt",
                                           "cwd after renaming it: /rn/f", "renames done")),
    "layers": Spec(needs_dir=True, lines=("no tree",)),  # its tree: tests/test_overlay.py
    "fdlinks": Spec(needs_dir=True, lines=("read via /dev/fd: through the pipe",
                                           "reopened file reads from its start: abc",
                                           "written to /dev/stdout",
                                           "closed descriptor's link: ENOENT")),
    "dynelf": Spec(needs_dir=True, lines=("parent: interp (none), base set: 0",
                                          "child: entry is _start: 1", "child exited 7")),
    "vforkchld": Spec(lines=("vfork returned its child: 5/5; reaped 10",)),
    "epolls": Spec(needs_dir=True, lines=("ready order: 3 12:0x1 10:0x1 11:0x1",
                                          "rotate max2: 2 10:0x1 11:0x1",
                                          "first closed: 2 2:0x1 1:0x1",
                                          "outer: 1 6:0x1",
                                          "pwait unblocked: -1 errno=EINTR")),
    "procread": Spec(needs_dir=True, lines=(
        "status[2]: tgid=1 pid=1 ppid=1 threads=1 state=R name=1",
        "stat[2]: fields=52 pid=1 comm=1 state=R ppid=1 pgrp=1 threads=1",
        "task entries: 2", "task comm: 1", "thread-self comm: 1", "cmdline: args=2 same=1",
        "maps: lines>3=1 formed=1 stack=1 exe=1",
        "fd entries: stdio, pipe, file and the directory itself: 1",
        "read through /proc/self/fd: piped", "file link: ends=1 same inode=1",
        "fdinfo: pos=3 flags=1", "write refused: 1")),
    "eventfds": Spec(lines=("semaphore: 1 1 -11", "blocked write=8",
                            "select ready=3 r{ 3 4 } w{ 5 }",
                            "select timed out=0 left=0.000000 set=0")),
    "timerfds": Spec(lines=("periodic after 4.5 periods: read=4",
                            "realtime abstime in the past: read=11 then=-11",
                            "epoll wait 2: n=1 events=0x1 data=77 read=1",
                            "thread read=1", "timerfds done")),
    "signalfds": Spec(lines=("one read, 3 records: 12/-6 10/0 12/0",
                             "child exit: signo=17 code=1 pid-ok=1 status=7",
                             "woken by a child: signo=12 code=0 pid-ok=1",
                             "epoll waited=1 events=0x1 data=5", "signalfds done")),
    "itimers": Spec(lines=("alarm(0)=0 alarm(5)=0 alarm(3)=5 alarm(0)=3",
                           "pause=-1 errno=EINTR alrm=1",
                           "periodic SIGALRM over a busy loop: 5", "SIGVTALRM: 3",
                           "child: ITIMER_REAL 0", "after exec: alarm left=50",
                           "itimers done")),
    "ptimers": Spec(lines=("first id=1",
                           "one-shot: sig=10 code=-2 value=42 overrun=0 timerid-ok=1",
                           "periodic: sig=12 overrun=4 getoverrun=4",
                           "SIGEV_THREAD_ID: the target thread took sig=10 code=-2",
                           "signalfd: n=128 signo=12 code=-2 int=9 tid-ok=1 overrun=1",
                           "SIGEV_THREAD callbacks: 1", "child: parent's timer=22",
                           "ptimers done")),
    "shmfile": Spec(needs_dir=True, lines=(
        "exchange: 24/24 rounds seen both ways, sum=3553496272, child exit=0",
        "read(2) sees a store: through the map", "the map sees write(2): written",
        "msync: sync=0 async=0 invalidate=0", "after munmap the file holds: Z and 499",
        "past EOF: read=SIGBUS/ADRERR write=SIGBUS/ADRERR",
        "after growing: read=ok write=ok value=7 tail=0",
        "after shrinking: page0=ok page1=SIGBUS/ADRERR", "mremap: kept=A file=B",
        "two maps: QW", "MAP_SHARED|MAP_ANONYMOUS across fork: 42", "shmfile OK")),
    "unixpair": Spec(lines=("child: got a fd: 1, read 18 'through the socket'",
                            "short control: got fd 1 ctrunc=1",
                            "blocked SIGPIPE: send -32 pending=1",
                            "seqpacket to a closed peer: -32 (no signal)")),
    "unixserver": Spec(needs_dir=True, lines=("socket inode: sock=1 mode=755", "bind it again: -98",
                              "client 2 exited 0", "connect after unlink: -2",
                              "backlog 0: 1 connected, then errno 11; listener revents 0x1")),
    "unixdgram": Spec(needs_dir=True, lines=("queue full after 11 datagrams: errno 11",
                             "peer gone: -111, then -107",
                             "seqpacket 1: 6 'record' trunc=1",
                             "recvmmsg: 3: 1'a' 2'bb' 3'ccc'")),
    "unixgc": Spec(lines=("self cycle reader: poll ready 1, read 0",
                          "pending reader: poll ready 1, read 0",
                          "two cycle reader: poll ready 1, read 0",
                          "listener reader: poll ready 1, read 0",
                          "kept reader (no EOF): poll ready 0, read -1",
                          "kept: reader gets 1", "kept: c0 to its peer 2, peer reads 2",
                          "kept reader after close: poll ready 1, read 0", "unixgc OK")),
    "tcploop": Spec(lines=("listener port ephemeral>=32768: 1", "with SO_REUSEADDR too: -98",
                           "connect to a port nobody listens on: -111",
                           "echoed: hello from client 1", "client 1 exit 0",
                           "MSG_WAITALL 8 'waitall!'", "read after RST: -104",
                           "peer of a lingering close reads: -104",
                           "accepted from ::ffff:127.0.0.1 len 28 flowinfo 0 scope 0")),
    "sockedge": Spec(needs_dir=True, lines=(
        "inode d_type: 12 (DT_SOCK 12)", "inode open: -1 ENXIO",
        "inode truncate: -1 EINVAL", "inode execve: -1 EACCES", "inode renamed: sock 1",
        "inode replaced: sock 0 reg 1", "epipe send 1: 1",
        "epipe send 2: -1 EPIPE", "unixpipe send 1: -1 EPIPE",
        "refused nonblocking connect: -1 EINPROGRESS", "refused SO_ERROR: ECONNREFUSED",
        "backlog recv: -1 ECONNRESET", "nbclose SO_ERROR: ECONNRESET",
        "synclose SO_ERROR: ECONNREFUSED", "cmsg unix SOL_IP: 1",
        "cmsg tcp reader: 2 bytes, control 0")),
    "bigwrite": Spec(lines=("tcp write of 4194304: 4194304 (sum cd00ae3be3e20000), child 0",
                            "fds reader: 1048576 bytes, 1 descriptor(s)",
                            "interrupted pipe write (SA_RESTART 1): 65536 errno 0 alarms 1",
                            "reader closed mid-write: short 1, SIGPIPE 0, child 0",
                            "next write: -1 errno EPIPE 1, SIGPIPE 1",
                            "sendmmsg stream 3 x 524288: 3, each whole 1",
                            "sendmmsg dgram 30 x 1000: 30, each whole 1",
                            "recvmmsg of 3 spaced datagrams: 3, first 1",
                            "interrupted sendmmsg: 1, first short 1, alarms 1")),
    "netbench": Spec(lines=("connect to a full backlog: -1 errno EINPROGRESS",
                            "writable before accept: 0",
                            "writable within 10 s of accepting: 1 revents 0x4", "SO_ERROR 0",
                            "accepted the second: 1", "bytes through: 1")),
    "udploop": Spec(lines=("recvmsg with MSG_TRUNC into 4: 10, msg_flags MSG_TRUNC 1",
                           "send 65508: -90", "connected b gets 6 'friend'", "next send: -111",
                           "recv reports it: -111", "v6-only sendto v4-mapped: -101",
                           "v6 got 7 'over v4' from ::ffff:127.0.0.1 family 10 len 28 "
                           "flowinfo 0 scope 0")),
    "fsmeta": Spec(needs_dir=True, lines=("lstat link: symlink=1 size=1 blocks=0",
                                          "F_GETLK: ret=0 unlocked=1 start=0 len=10")),
    "ghosts": Spec(needs_dir=True, lines=(
        "unlinked: access=-1",
        "after writes a: nlink=0 size=10 off=9 mode=640 data=\"head-dup--\"",
        "same inode: 1",
        "after child a: nlink=0 size=20 off=15 mode=640 data=\"head-dup-child-capp-\"",
        "private map after write: \"Head-dup-\"",
        "read back: \"heAD-dup-c\"",
        "last description: nlink=0 size=8196 off=10 mode=640 data=\"heAD-dup-child-capp-\"",
        "ghosts done")),
    "reclocks": Spec(needs_dir=True, lines=("child GETLK WR 0+100: WR start=0 len=10 pid=parent",
                                            "split: GETLK WR 4+100: WR start=5 len=5 pid=parent",
                                            "ofd: own OFD_GETLK WR: WR start=0 len=10 pid=-1",
                                            "flock: own SH|NB: EAGAIN",
                                            "block: SETLKW WR 0+10: 0, parent released first=1",
                                            "intr: SETLKW WR 0+10: EINTR",
                                            "deadlock: parent SETLKW 1+1: EDEADLK",
                                            "reclocks done")),
    "copyfile": Spec(needs_dir=True, lines=(
        "sendfile at 10: 5, read \"brown\", off 15, src offset 9",
        "sendfile 200000 into a pipe: 65536, off 65536",
        "copy_file_range with offsets: 5, in 15 out 25, offsets 10 6",
        "copy_file_range overlapping in one file: EINVAL",
        "copyfile done")),
    "metacalls": Spec(needs_dir=True, lines=(
        "lchown: ok link uid=7 target uid=1234",
        "listxattr: 14 user.a user.b size=14 small=ERANGE",
        "write-only nonblocking, no reader: ENXIO",
        "blocking opens: from the child status=0",
        "truncate fifo: EINVAL readdir dt_fifo=1 unlinked open still fifo=1 links=0",
        "chroot: ok chdir: ok cwd=/sub dotdot: jailed symlink: ok outside: ENOENT")),
    "spawn": Spec(args=("/bin/true",), lines=("posix_spawn: 0", "spawned child exited 0",
                                              "vforked child exited 0")),
    "rlimits": Spec(lines=("soft above hard: EINVAL", "self: nofile soft=12",
                           "open after 9: EMFILE", "dup2 to 12: EBADF",
                           "F_DUPFD from 12: EINVAL", "prlimit old soft=12",
                           "child: nofile soft=10", "after exec: nofile soft=10",
                           "after exec: core soft=1048576 hard=2097152", "exec child: 0")),
    "goruntime": Spec(lines=tuple(f"{what:<34} {res}" for what, res in (
        ("sched_getaffinity size 12", "EINVAL"), ("sched_getaffinity no such pid", "ESRCH"),
        ("madvise unknown advice", "EINVAL"), ("madvise past the end", "ENOMEM"),
        ("after DONTNEED", "0"), ("tgkill wrong tgid", "ESRCH"), ("handler saw", "23"),
        ("mincore", "ok"), ("nanosleep nsec 1e9", "EINVAL")))),
    # Go programs (vkckpt/guests/*.go): built by `go build`, looked up like the C guests
    "gocompute": Spec(lines=("default: workers=f1b974b0c2ba61c9", "gomaxprocs now: 4",
                             "four: counter=32000 atomic=32000",
                             "preempted spinner stopped: true")),
    "gohttp": Spec(lines=("200 \"hello, client2\"",
                          "200 \"POST 20 bytes: A BODY OVER LOOPBACK\"",
                          "404 \"404 page not found\\n\"", "gohttp done")),
    "gotimers": Spec(lines=("sleep at least asked: true", "woke: 1 2 3 4 5, none early: true",
                            "ticker: 5 ticks, none early: true",
                            "select: timed out 3, got 7 before timeout",
                            "timers: fired [a b], stopped true, reset active true")),
    "gofiles": Spec(needs_dir=True, lines=(
        "readdir: a.txt(dir=false) b.txt(dir=false) c.txt(dir=false) sub(dir=true)",
        "scanner: 501 lines, last \"last line\", offset 7879",
        "pipe: 31374 bytes, crc e2132171", "nofile 16: opened 10, then EMFILE true",
        "fsync: file <nil>, dir <nil>, pipe EINVAL true, /dev/null EINVAL true",
        "cleaned up: 0 left")),
    "gogc": Spec(lines=("gc ran: true", "allocated at least 50 MiB: true",
                        "finalizers run: 20 of 20", "released after drop: true")),
    "goexec": Spec(env={"HELLO_GREETING": "bonjour"}, companions=("hello",), lines=(
        "argv[2]=go exec", "greeting=ciao",
        'self: "child: exiting 3\\n" exit=3 exiterror=true',
        'cat: err=<nil> child read: "FED THROUGH STDIN"',
        "notified: child exited", "missing: not exist=true")),
    "gosignals": Spec(status=-signal.SIGTERM, lines=(
        "notify: 3 of 3 SIGUSR1", "goroutine got: user defined signal 2",
        "stopped channel: nothing", "ignored: true",
        "all 8 goroutines recovered alike: true", "write without reader: EPIPE true",
        "sigterm caught: terminated", "gosignals done")),
    # checkpoint(2) is vkckpt's own: the host kernel answers ENOSYS and the guest goes on.
    "ckpt_self": Spec(
        args=("self", "x.img"),
        lines=("checkpoint failed: Function not implemented", "after acc=23bb7621"),
    ),
}


@pytest.fixture(scope="session")
def binaries() -> dict[str, Path]:
    return build.build_all(jobs=os.cpu_count() or 2)


def run_guest(binary: Path, spec: Spec, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    args = list(spec.args)
    for name in spec.companions:
        shutil.copy2(build.guest_path(name), tmp_path / name)
    if spec.needs_dir:
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        args.insert(0, str(work))
    return subprocess.run(
        [str(binary), *args],
        cwd=tmp_path,
        env=dict(spec.env),
        capture_output=True,
        text=True,
        timeout=120,
    )


#: Guests that must never run natively: escape tries to write outside its directory,
#: hostpaths plants symlinks to host paths.
NATIVE_UNSAFE = {"escape", "hostpaths", "stuck", "pubserver"}  # stuck, pubserver wait forever


def test_every_guest_has_a_spec() -> None:
    assert sorted(set(SPECS) | NATIVE_UNSAFE) == build.guest_names()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_guest_runs_natively(name: str, binaries: dict[str, Path], tmp_path: Path) -> None:
    spec = SPECS[name]
    first = run_guest(binaries[name], spec, tmp_path)
    assert first.returncode == spec.status, first.stdout + first.stderr
    assert "FAIL" not in first.stdout
    assert first.stderr == ""
    out_lines = first.stdout.splitlines()
    for line in spec.lines:
        assert line in out_lines, f"{line!r} missing from:\n{first.stdout}"
    if spec.needs_dir:
        assert list((tmp_path / "work").iterdir()) == [], "guest did not clean up"
    second = run_guest(binaries[name], spec, tmp_path)
    assert second.returncode == first.returncode
    if spec.deterministic:
        assert second.stdout == first.stdout, "output is not deterministic"


def test_compute_scale(binaries: dict[str, Path], tmp_path: Path) -> None:
    out = run_guest(binaries["compute"], Spec(args=("2",)), tmp_path)
    assert out.returncode == 0
    assert "iterations=10000000" in out.stdout.splitlines()


def test_execer_child_mode(binaries: dict[str, Path], tmp_path: Path) -> None:
    env = {"EXECER_VAR": "direct"}
    out = run_guest(binaries["execer"], Spec(args=("child", "x"), env=env), tmp_path)
    assert out.returncode == 5
    assert out.stdout.splitlines() == [
        "child: argc=3",
        "child: argv[1]=child",
        "child: argv[2]=x",
        "child: EXECER_VAR=direct",
        "child: HOME=(unset)",
    ]


def test_guest_path_is_cached(binaries: dict[str, Path]) -> None:
    path = build.guest_path("hello")
    assert path == binaries["hello"]
    mtime = path.stat().st_mtime_ns
    again = build.guest_path("hello")
    assert again == path
    assert again.stat().st_mtime_ns == mtime
    assert path.name.startswith("hello-") and len(path.name) == len("hello-") + 16
    assert os.access(path, os.X_OK)


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VKCKPT_CACHE_DIR", str(tmp_path / "c"))
    assert build.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("VKCKPT_CACHE_DIR")
    assert build.cache_dir() == Path.home() / ".cache" / "vkckpt" / "guests"


def test_unknown_guest_raises() -> None:
    with pytest.raises(GuestBuildError, match="no such guest"):
        build.guest_path("no_such_program")


def test_broken_source_raises(tmp_path: Path) -> None:
    src = tmp_path / "broken.c"
    src.write_text("int main(void) { return undeclared_identifier; }\n")
    out_dir = tmp_path / "out"
    with pytest.raises(GuestBuildError, match="undeclared_identifier"):
        build.compile_source(src, out_dir)
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_compile_source_concurrently_and_rehash(tmp_path: Path) -> None:
    src = tmp_path / "tiny.c"
    src.write_text('#include <stdio.h>\nint main(void) { puts("tiny"); return 3; }\n')
    out_dir = tmp_path / "out"
    results: list[Path] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(build.compile_source(src, out_dir))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1
    assert [p.name for p in out_dir.iterdir()] == [results[0].name]  # no temp files left
    proc = subprocess.run([str(results[0])], capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stdout) == (3, "tiny\n")

    src.write_text('#include <stdio.h>\nint main(void) { puts("tiny2"); return 4; }\n')
    assert build.output_name(src) != results[0].name


def test_main_prints_paths(binaries: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert build.main(["-j", "2", "hello", "segfault"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"hello\t{binaries['hello']}", f"segfault\t{binaries['segfault']}"]
    assert build.main(["no_such_program"]) == 1
