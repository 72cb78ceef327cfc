"""Pending signals with their siginfo: standard signals coalesce, real-time ones queue."""

from __future__ import annotations

import struct

from vkckpt.abi import signals as S
from vkckpt.record import Comparable

SIGINFO_SIZE = 128


class SigInfo(Comparable):
    """The parts of siginfo_t the vkernel produces (x86-64 layout in `pack`)."""

    __slots__ = ("signo", "code", "errno", "pid", "uid", "status", "addr", "value", "extra")

    def __init__(self, signo: int, code: int = S.SI_USER, errno: int = 0, pid: int = 0,
                 uid: int = 0, status: int = 0, addr: int = 0, value: int = 0,
                 extra: dict | None = None) -> None:
        self.signo = signo
        self.code = code
        self.errno = errno
        self.pid = pid
        self.uid = uid
        self.status = status  # SIGCHLD
        self.addr = addr      # faults
        self.value = value    # sigqueue
        self.extra = {} if extra is None else extra

    def pack(self) -> bytes:
        """Encode as the kernel's 128-byte siginfo_t."""
        head = struct.pack("<iii4x", self.signo, self.errno, self.code)
        if self.signo in (S.SIGSEGV, S.SIGBUS, S.SIGILL, S.SIGFPE, S.SIGTRAP) and \
                self.code > 0:
            body = struct.pack("<Q", self.addr)
        elif self.signo == S.SIGCHLD:
            body = struct.pack("<IIi4xQQ", self.pid, self.uid, self.status, 0, 0)
        else:
            body = struct.pack("<IIQ", self.pid, self.uid, self.value)
        return (head + body).ljust(SIGINFO_SIZE, b"\0")


class PendingSignals:
    """A pending set (thread-private or process-wide) in arrival order."""

    def __init__(self) -> None:
        self.queue: list[SigInfo] = []
        self.mask = 0  # bits of signals with at least one entry

    def add(self, info: SigInfo) -> bool:
        """Queue info; a standard signal already pending is dropped. Returns True if added."""
        bit = S.sigbit(info.signo)
        if info.signo < S.SIGRTMIN_KERNEL and self.mask & bit:
            return False
        self.queue.append(info)
        self.mask |= bit
        return True

    def take(self, allowed: int) -> SigInfo | None:
        """Dequeue the lowest-numbered signal in allowed (synchronous faults first)."""
        ready = self.mask & allowed
        if not ready:
            return None
        sync = ready & S.SYNCHRONOUS
        pick = sync if sync else ready
        sig = (pick & -pick).bit_length()
        for i, info in enumerate(self.queue):
            if info.signo == sig:
                del self.queue[i]
                break
        if not any(i.signo == sig for i in self.queue):
            self.mask &= ~S.sigbit(sig)
        return info

    def discard(self, sig: int) -> None:
        """Drop every pending instance of sig (it became ignored, or SIGCONT/SIGSTOP rules)."""
        self.queue = [i for i in self.queue if i.signo != sig]
        self.mask &= ~S.sigbit(sig)
