"""Running a configured vkernel to completion and turning the outcome into an exit status."""

from __future__ import annotations

import os

from vkckpt.abi import errno as E
from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.errors import ConfigError, GuestError
from vkckpt.kernel import VKernel
from vkckpt.record import Comparable
from vkckpt.task_exec import spawn

EXIT_VKERNEL_ERROR, EXIT_CANNOT_EXEC, EXIT_NOT_FOUND = 125, 126, 127


class RunResult(Comparable):
    """What a finished run produced (pid 1's wait status and everything measured)."""

    __slots__ = ("status", "exit_code", "ticks", "statuses")

    def __init__(self, status: int, exit_code: int, ticks: int,
                 statuses: dict[int, int] | None = None) -> None:
        self.status = status
        self.exit_code = exit_code
        self.ticks = ticks
        self.statuses = {} if statuses is None else statuses


def exit_code_of(status: int) -> int:
    """Shell convention: the exit code, or 128+N when killed by signal N."""
    return (status >> 8) & 0xFF if status & 0x7F == 0 else 128 + (status & 0x7F)


def host_to_guest_program(root: str, program: str) -> str:
    """Accept a host path inside the root (./prog) or a guest path (/bin/prog).

    A host path is first taken as written (made absolute, `..` collapsed, nothing followed):
    a symlink inside the root is the guest's to resolve, in the guest namespace, never the
    host's (`ROOT/bin/ls` -> `/bin/busybox` means the root's busybox).  Only a path that
    reaches the root through host symlinks above it is resolved on the host."""
    written = os.path.abspath(program)
    for base in {os.path.abspath(root), os.path.realpath(root)}:
        if (written + "/").startswith(base.rstrip("/") + "/"):
            rel = os.path.relpath(written, base).replace(os.sep, "/")
            return "/" if rel == "." else "/" + rel
    host = os.path.realpath(program)
    real_root = os.path.realpath(root)
    if os.path.exists(program) and (host + "/").startswith(real_root.rstrip("/") + "/"):
        rel = os.path.relpath(host, real_root).replace(os.sep, "/")
        return "/" if rel == "." else "/" + rel
    if program.startswith("/") and os.path.lexists(os.path.join(real_root, program[1:])):
        return program
    if os.path.exists(program):
        raise ConfigError(f"{program}: the program must be inside the guest root {root} "
                          f"(use --root)")
    return program if program.startswith("/") else "/" + program


def boot(config: KernelConfig) -> VKernel:
    """Create a vkernel and start the configured processes (pid 1 first)."""
    from vkckpt.syscalls.table import ON_EINTR, TABLE  # the handlers: `import vkckpt` stays lean

    if not config.processes:
        raise ConfigError("no process to run")
    k = VKernel(config, TABLE, ON_EINTR)
    try:
        for b in config.binds:
            k.root.bind(b)
        k.publish.open()
    except ConfigError:
        k.shutdown()
        raise
    for spec in config.processes:
        _spawn(k, spec)
    return k


def _spawn(k: VKernel, spec: ProcessSpec) -> None:
    try:
        spawn(k, spec.program, spec.argv, spec.env, spec.cwd)
    except GuestError as exc:
        what = {E.ENOENT: "not found", E.EACCES: "permission denied",
                E.ENOEXEC: "not an x86-64 executable",
                E.ENOMEM: "does not fit the memory limit (raise --memory-limit)"}.get(
                    exc.errno, E.NAMES.get(
                    exc.errno, str(exc.errno)))
        detail = f": {exc.detail}" if exc.detail and exc.detail != spec.program and \
            exc.errno != E.ENOMEM else ""
        if exc.detail.startswith("its interpreter"):  # task_exec.open_interp
            what, detail = exc.detail, ""
        raise ProgramError(f"{spec.program}: {what}{detail}",
                           EXIT_NOT_FOUND if exc.errno == E.ENOENT else EXIT_CANNOT_EXEC
                           ) from None


class ProgramError(ConfigError):
    """The configured program cannot be started; carries the exit code to use."""

    def __init__(self, msg: str, code: int) -> None:
        super().__init__(msg)
        self.code = code


def run(config: KernelConfig) -> RunResult:
    """Boot and run until pid 1 exits."""
    k = boot(config)
    status = k.run()
    return RunResult(status, exit_code_of(status), k.sched.ticks, dict(k.statuses))
