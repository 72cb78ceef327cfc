"""The --trace-syscalls log line: one system call, its arguments and its result."""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi.syscalls import NAMES as SYSCALL_NAMES

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.syscalls.table import Entry
    from vkckpt.threads.thread import Thread


def trace_line(t: Thread, nr: int, args: tuple[int, ...], entry: Entry | None,
               ret: object) -> str:
    """`[pid:tid] name(args) = result`: ret None is a sleep, an errno is named."""
    name = SYSCALL_NAMES.get(nr, str(nr))
    n = entry.nargs if entry else 6
    shown = ", ".join(hex(a) if a > 4096 else str(a) for a in args[:n])
    res = "<sleeps>" if ret is None else ret
    if isinstance(res, int) and -4096 < res < 0:
        res = f"-1 {E.NAMES.get(-res, -res)}"
    return f"[{t.process.pid}:{t.tid}] {name}({shown}) = {res}"
