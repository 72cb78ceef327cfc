"""Creating programs: the vkernel's first processes and execve(2)."""

from __future__ import annotations

import os

from vkckpt import task_exit
from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.engine.engine import Engine
from vkckpt.errors import GuestError
from vkckpt.fs.fdtable import FdTable
from vkckpt.fs.files import Console
from vkckpt.process import Process
from vkckpt.signals.actions import SignalActions
from vkckpt.task_clone import vfork_release
from vkckpt.threads.thread import Thread
from vkckpt.vmspace.loader import (
    build_stack,
    file_identity,
    load_elf,
    load_interp,
    parse_elf_cached,
)
from vkckpt.vmspace.vmspace import VmSpace

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel

MAX_ARG_BYTES = 2 << 20
MAX_ARGS = 65536


class Program:
    """An executable opened for execve: its guest path, parsed headers and open host file.

    Only the ELF headers and the PT_LOAD segments' file bytes are ever read, so the size of
    the file does not matter (an 8 GiB sparse file with a small valid header loads at once).
    The headers come from the loader's cache when the file is unchanged (loader.py)."""

    def __init__(self, guest: str, fd: int, st: os.stat_result) -> None:
        self.guest = guest
        self.fd = fd
        self.elf = parse_elf_cached(file_identity(st), self.pread, st.st_size)

    def pread(self, n: int, off: int) -> bytes:
        """n bytes at off (fewer at the end of the file), in one read when n <= 16 MiB."""
        parts: list[bytes] = []
        got = 0
        while got < n:
            try:
                chunk = os.pread(self.fd, min(n - got, 16 << 20), off + got)
            except OSError as exc:
                raise GuestError(exc.errno or E.EIO) from None
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        os.close(self.fd)


def open_program(k: VKernel, path: str, cwd: str, top: str = "/") -> Program:
    """Resolve an executable inside the guest root (top: the caller's chroot) and read its
    headers (close() it)."""
    r = k.root.resolve(path, cwd, top=top)
    st = os.stat(r.host)
    if not os.path.isfile(r.host) or k.inodes.kind(st):
        raise GuestError(E.EACCES, f"{path}: not a regular file")
    if not st.st_mode & 0o111:
        raise GuestError(E.EACCES, f"{path}: not executable")
    fd = k.root.host_open(r, os.O_RDONLY)
    try:
        return Program(r.guest, fd, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise


def open_interp(k: VKernel, prog: Program, cwd: str, top: str = "/") -> Program | None:
    """The program's PT_INTERP interpreter opened, resolved in the guest namespace like any
    path (relative to cwd, as Linux's open_exec); None for a static program.  A missing
    interpreter is ENOENT, as on Linux, with a detail that names it."""
    path = prog.elf.interp
    if path is None:
        return None
    try:
        return open_program(k, path, cwd, top)
    except GuestError as exc:
        why = {E.ENOENT: "not found", E.ENOEXEC: exc.detail or "not an ELF interpreter"}.get(
            exc.errno, E.NAMES.get(exc.errno, str(exc.errno)))
        raise GuestError(exc.errno, f"its interpreter {path}: {why}") from None


def new_image(k: VKernel, prog: Program, argv: list[bytes], envp: list[bytes],
              cwd: str = "/", execfn: bytes | None = None, top: str = "/"
              ) -> tuple[Engine, VmSpace, dict[str, int]]:
    """Build an engine and vmspace holding the program (and its interpreter, which runs
    first); returns the initial registers.  execfn: AT_EXECFN, the path as execve was given
    it (default: the program's guest path).  Closes prog."""
    try:
        interp = open_interp(k, prog, cwd, top)
    except BaseException:
        prog.close()
        raise
    eng = Engine(k.syscall_entry, preempt=k.config.preempt)
    vm = VmSpace(eng, k.mem, k.ids.bid)
    try:
        entry, phdr, phnum = load_elf(vm, prog.elf, prog.pread, prog.guest)
        base, start = 0, entry
        if interp is not None:
            base, start = load_interp(vm, interp.elf, interp.pread, interp.guest)
        fn = os.fsencode(prog.guest) if execfn is None else execfn
        sp = build_stack(vm, argv, envp, fn, entry, phdr, phnum,
                         k.random_bytes(16), base)
    except BaseException:
        vm.release()
        eng.close()
        raise
    finally:
        prog.close()
        if interp is not None:
            interp.close()
    return eng, vm, {"rip": start, "rsp": sp, "rflags": 0x202}


def spawn(k: VKernel, program: str, argv: list[str], env: dict[str, str],
          cwd: str = "/", ppid: int = 0) -> Process:
    """Start a process from the configuration (a child of the vkernel itself)."""
    prog = open_program(k, program, cwd)
    guest = prog.guest
    envp = [f"{a}={b}".encode() for a, b in env.items()]
    # AT_EXECFN (and so the task's name) is the path as given, as for execve: "python3"
    # for /usr/bin/python3 -> python3.11
    eng, vm, regs = new_image(k, prog, [a.encode() for a in argv], envp, cwd,
                              execfn=os.fsencode(program))
    pid = k.ids.pid()
    fds = FdTable()
    svc = k.file_services()
    for fd, flags in ((0, F.O_RDONLY), (1, F.O_WRONLY), (2, F.O_WRONLY)):
        fds.install(Console(flags, fd, svc), fd=fd)
    p = Process(pid, ppid, vm, eng, fds, SignalActions(), cwd=k.root.resolve(cwd).guest,
                exe=guest, argv=[a.encode() for a in argv], pgid=pid, sid=pid)
    t = Thread(pid, p)
    eng.set_state(regs)
    t.ctx = eng.context_new()
    p.engine_owner = t
    p.threads.append(t)
    k.add_process(p)
    k.add_thread(t)
    k.sched.enqueue(t)
    return p


def with_env(envp: list[bytes], env: dict[bytes, bytes]) -> list[bytes]:
    """envp with each NAME=VALUE of env: in place of NAME's first entry (its others
    dropped), or appended in env's order when NAME is not there."""
    out: list[bytes] = []
    done: set[bytes] = set()
    for entry in envp:
        name = entry.split(b"=", 1)[0]
        if name in env:
            if name not in done:
                out.append(name + b"=" + env[name])
                done.add(name)
            continue
        out.append(entry)
    return out + [n + b"=" + v for n, v in env.items() if n not in done]


def execve(k: VKernel, t: Thread, path: bytes, argv: list[bytes], envp: list[bytes]) -> object:
    """Implement execve(2): load the new image now, switch to it once the engine stops."""
    p = t.process
    if k.exec_env:
        envp = with_env(envp, k.exec_env)
    try:
        prog = open_program(k, os.fsdecode(path), p.cwd, p.root)
        guest = prog.guest
        eng, vm, regs = new_image(k, prog, argv, envp, p.cwd, path, p.root)
    except GuestError as exc:
        if exc.errno == E.ENOEXEC or exc.detail.startswith("its interpreter"):
            k.log(f"vkckpt: execve {os.fsdecode(path)}: {exc.detail}")  # why, for the user
        raise

    def commit() -> None:
        for other in p.live_threads:
            if other is not t:
                task_exit.reap_thread(k, other)
        k.retire(p.vm, p.engine)
        p.vm, p.engine, p.exe, p.argv = vm, eng, guest, argv
        p.comm = b""  # named after the new program again
        if t.tid != p.pid:  # a non-leader thread takes over the leader's id
            del k.threads[t.tid]
            t.tid = p.pid
            k.add_thread(t)
        p.threads = [t]
        p.actions.reset_for_exec()
        p.ptimers.clear()  # exit_itimers: setitimer's timers are kept, POSIX timers are not
        p.fds.close_on_exec()
        t.altstack = (0, 2, 0)
        t.clear_child_tid = 0
        t.robust_list = (0, 0)
        eng.set_state(regs)
        t.ctx = eng.context_new()
        p.engine_owner = t
        vfork_release(k, p)

    return k.defer(commit)
