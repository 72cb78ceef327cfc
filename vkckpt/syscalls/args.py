"""Decoding raw 64-bit syscall arguments, and the helpers several handler families share."""

from __future__ import annotations

import struct

from vkckpt.abi import errno as E
from vkckpt.abi.limits import UIO_MAXIOV
from vkckpt.errors import GuestError
from vkckpt.vclock import KTIME_MAX

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread

MAX_IO = 1 << 26  # one read/write moves at most 64 MiB, like Linux's MAX_RW_COUNT-ish bound


def deadline_at(ns: int) -> int | None:
    """A sleep's virtual deadline, or None (no timeout) at or past KTIME_MAX."""
    return ns if ns < KTIME_MAX else None


def wait_deadline(k: VKernel, t: Thread, timeout_ns: int | None) -> int | None:
    """The deadline of a wait with a relative timeout (None: none). A call re-run after a
    wake-up that did not satisfy it keeps the deadline it first computed, so spurious
    wake-ups (every pipe event wakes every poll) never extend the timeout."""
    if t.retry_deadline is not None:
        return t.retry_deadline
    return None if timeout_ns is None else deadline_at(k.now_ns() + timeout_ns)


def s32(x: int) -> int:
    """The low 32 bits of x as a signed int (an int argument)."""
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def s64(x: int) -> int:
    """x as a signed 64-bit value (off_t, pid_t in a long, ...)."""
    return x - (1 << 64) if x & (1 << 63) else x


def u32(x: int) -> int:
    return x & 0xFFFFFFFF


def path_arg(t: Thread, addr: int) -> bytes:
    """A NUL-terminated path (EFAULT on bad pointers, ENAMETOOLONG past PATH_MAX)."""
    if addr == 0:
        raise GuestError(E.EFAULT)
    return t.process.vm.read_cstr(addr, 4096)


def strv_arg(t: Thread, addr: int, limit: int = 65536) -> list[bytes]:
    """A NULL-terminated array of strings (argv, envp)."""
    out: list[bytes] = []
    total = 0
    vm = t.process.vm
    while addr:
        ptr = vm.read_u64(addr + 8 * len(out))
        if ptr == 0:
            return out
        s = vm.read_cstr(ptr, 131072)
        total += len(s) + 1
        if len(out) >= limit or total > 2 << 20:
            raise GuestError(E.E2BIG)
        out.append(s)
    return out


def iovec_arg(t: Thread, addr: int, count: int) -> list[tuple[int, int]]:
    """An iovec array as (base, len) pairs."""
    if count < 0 or count > UIO_MAXIOV:
        raise GuestError(E.EINVAL)
    raw = t.process.vm.read(addr, 16 * count)
    pairs = [struct.unpack_from("<QQ", raw, 16 * i) for i in range(count)]
    if sum(n for _, n in pairs) > MAX_IO * 4 or any(n >> 63 for _, n in pairs):
        raise GuestError(E.EINVAL)
    return pairs


def sigset_arg(t: Thread, addr: int, size: int) -> int:
    """A sigset_t argument: 64 signal bits; any other size is EINVAL (as on x86-64 Linux)."""
    if size != 8:
        raise GuestError(E.EINVAL)
    return struct.unpack("<Q", t.process.vm.read(addr, 8))[0]


def under_temporary_mask(t: Thread, call: Callable[[], int]) -> int:
    """Run a call that may wait under a temporary signal mask (ppoll, rt_sigtimedwait): when
    it returns or fails, the caller's mask is back; when it sleeps (Block), the mask stays
    in place for the wait."""
    try:
        result = call()
    except GuestError:
        t.end_temporary_mask()
        raise
    t.end_temporary_mask()
    return result


def timespec_arg(t: Thread, addr: int) -> int:
    """A struct timespec as nanoseconds (EINVAL when malformed)."""
    sec, nsec = struct.unpack("<qq", t.process.vm.read(addr, 16))
    if sec < 0 or not 0 <= nsec < 1_000_000_000:
        raise GuestError(E.EINVAL)
    return sec * 1_000_000_000 + nsec


def put_timespec(t: Thread, addr: int, ns: int) -> None:
    t.process.vm.write(addr, struct.pack("<qq", ns // 1_000_000_000, ns % 1_000_000_000))


def put_u32(t: Thread, addr: int, v: int) -> None:
    t.process.vm.write(addr, struct.pack("<I", v & 0xFFFFFFFF))


def put_i32(t: Thread, addr: int, v: int) -> None:
    t.process.vm.write(addr, struct.pack("<i", v))
