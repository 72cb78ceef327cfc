"""Advisory file locks shared by every process of the vkernel (Linux's fs/locks.c).

Three kinds, kept per inode (the (st_dev, st_ino) a guest's fstat sees, so a key is as
virtual and as stable across a thaw as the inode numbers of fs/inodes.py):

* POSIX record locks (fcntl F_SETLK...): owned by a process (its pid), byte ranges split and
  merged per owner, released when the owner closes any descriptor of the inode (and so at
  exit), never inherited by fork.
* OFD locks (F_OFD_SETLK...): the same ranges and conflicts, owned by an open file
  description, so shared across fork and dup and released at its last close.
* flock(2) locks: whole-file, owned by an open file description; they never meet the
  other two.

The POSIX and OFD locks of an inode are one list in Linux's order (each owner's locks
together, by start; an owner's first lock goes to the tail), so F_GETLK names the lock
Linux names.  Waiters sleep on the inode's queue and re-check when any lock of it goes;
a blocked POSIX request is remembered (`Blocked`) while its thread sleeps, for the
deadlock walk F_SETLKW does (posix_locks_deadlock).
"""

from __future__ import annotations

import struct

from vkckpt.abi import errno as E
from vkckpt.abi.fcntl import F_UNLCK, F_WRLCK, OFFSET_MAX
from vkckpt.errors import GuestError
from vkckpt.record import Record
from vkckpt.threads.wait import Block, WaitQueue

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.ops import OpenFile
    from vkckpt.threads.thread import Thread

MAX_DEADLK_ITERATIONS = 10  # Linux gives up the wait-for walk after this many owners
Key = tuple[int, int]


def inode_of(f: OpenFile) -> tuple[Key, int]:
    """(the lock key of f's inode, its size) from the stat the guest sees."""
    st = f.stat()
    dev, ino = struct.unpack_from("<QQ", st)
    return (dev, ino), struct.unpack_from("<q", st, 48)[0]


class FileLock(Record):
    """One lock held: `owner` is a pid (POSIX) or an OpenFile (OFD, flock); `pid` is what
    F_GETLK reports as l_pid (-1 for OFD locks); [start, end] inclusive, end OFFSET_MAX for
    "to the end of the file"."""

    __slots__ = ("owner", "pid", "type", "start", "end")

    def __init__(self, owner: object, pid: int, type: int, start: int, end: int) -> None:  # noqa: A002
        self.owner = owner
        self.pid = pid
        self.type = type
        self.start = start
        self.end = end

    def blocks(self, other: FileLock) -> bool:
        """Whether self stands in the way of request `other` (Linux's posix_locks_conflict)."""
        return (self.owner != other.owner and F_WRLCK in (self.type, other.type) and
                self.start <= other.end and other.start <= self.end)


class Blocked(Record):
    """A POSIX F_SETLKW request asleep: its thread, its owner and the owner of the lock it
    waits for (None: an OFD lock, where the wait-for walk stops).  Live only while the
    thread sleeps on `queue`."""

    __slots__ = ("thread", "owner", "blocker", "queue")

    def __init__(self, thread: Thread, owner: int, blocker: int | None,
                 queue: WaitQueue) -> None:
        self.thread = thread
        self.owner = owner
        self.blocker = blocker
        self.queue = queue

    def live(self) -> bool:
        s = self.thread.sleep
        return s is not None and s.queue is self.queue


class InodeLocks:
    """The locks of one inode and the queue their waiters sleep on."""

    def __init__(self, key: Key) -> None:
        self.posix: list[FileLock] = []  # POSIX and OFD locks, in Linux's flc_posix order
        self.flock: list[FileLock] = []  # flock locks, oldest first
        self.queue = WaitQueue(("lock", *key))

    def first_conflict(self, req: FileLock) -> FileLock | None:
        return next((lk for lk in self.posix if lk.blocks(req)), None)

    def idle(self) -> bool:
        return not self.posix and not self.flock and not self.queue.waiters


class LockTable:
    """Every lock of the vkernel, by inode key, and the POSIX requests asleep."""

    def __init__(self) -> None:
        self.inodes: dict[Key, InodeLocks] = {}
        self.blocked: dict[int, Blocked] = {}  # by tid, in the order they went to sleep

    def inode(self, key: Key) -> InodeLocks:
        """The locks of the inode with this key (made on first use)."""
        ctx = self.inodes.get(key)
        if ctx is None:
            ctx = self.inodes[key] = InodeLocks(key)
        return ctx

    def _tidy(self, key: Key) -> None:
        ctx = self.inodes.get(key)
        if ctx is not None and ctx.idle():
            del self.inodes[key]

    # -- POSIX and OFD record locks ------------------------------------------------------------
    def test(self, key: Key, req: FileLock) -> FileLock | None:
        """F_GETLK: the first lock of another owner in the way of req, or None."""
        ctx = self.inodes.get(key)
        return None if ctx is None else ctx.first_conflict(req)

    def set_posix(self, key: Key, req: FileLock, waiter: Thread | None) -> None:
        """F_SETLK (waiter None: EAGAIN on a conflict) or F_SETLKW (waiter sleeps on the
        inode's queue, or EDEADLK when the wait-for chain comes back to its owner)."""
        ctx = self.inode(key)
        if req.type != F_UNLCK:
            block = ctx.first_conflict(req)
            if block is not None:
                if waiter is None:
                    self._tidy(key)
                    raise GuestError(E.EAGAIN)
                if isinstance(req.owner, int):
                    if self._deadlock(req.owner, block):
                        raise GuestError(E.EDEADLK)
                    self._note_blocked(waiter, req.owner, block.owner, ctx.queue)
                raise Block(ctx.queue)
        if waiter is not None:
            self.blocked.pop(waiter.tid, None)
        if self._apply(ctx, req):
            ctx.queue.notify()
        self._tidy(key)

    def _note_blocked(self, t: Thread, owner: int, blocker: object, q: WaitQueue) -> None:
        """Remember t's request asleep (forgetting the entries whose sleep is over)."""
        self.blocked = {tid: b for tid, b in self.blocked.items() if b.live() and tid != t.tid}
        self.blocked[t.tid] = Blocked(t, owner, blocker if isinstance(blocker, int) else None, q)

    def _apply(self, ctx: InodeLocks, req: FileLock) -> bool:
        """Put req's owner's locks over [req.start, req.end] as req says (split, replace,
        merge with adjacent locks of its type); True when a lock went or changed."""
        at = next((i for i, lk in enumerate(ctx.posix) if lk.owner == req.owner), None)
        mine = [lk for lk in ctx.posix if lk.owner == req.owner]
        kept: list[FileLock] = []
        changed = False
        for lk in mine:
            if lk.end < req.start or lk.start > req.end:
                kept.append(lk)
                continue
            changed = changed or lk.type != req.type or lk.start < req.start or \
                lk.end > req.end
            if lk.start < req.start:
                kept.append(FileLock(lk.owner, lk.pid, lk.type, lk.start, req.start - 1))
            if lk.end > req.end:
                kept.append(FileLock(lk.owner, lk.pid, lk.type, req.end + 1, lk.end))
        if req.type != F_UNLCK:
            new = FileLock(req.owner, req.pid, req.type, req.start, req.end)
            for lk in list(kept):
                if lk.type == new.type and (lk.end + 1 == new.start or new.end + 1 == lk.start):
                    new.start, new.end = min(new.start, lk.start), max(new.end, lk.end)
                    kept.remove(lk)
            kept.append(new)
        kept.sort(key=lambda lk: lk.start)
        others = [lk for lk in ctx.posix if lk.owner != req.owner]
        at = len(others) if at is None else sum(1 for lk in ctx.posix[:at]
                                                if lk.owner != req.owner)
        ctx.posix = others[:at] + kept + others[at:]
        return changed

    def _deadlock(self, caller: int, block: FileLock) -> bool:
        """posix_locks_deadlock: does the chain of owners waiting for each other, from the
        owner of `block`, lead back to caller?"""
        owner: object = block.owner
        for _ in range(MAX_DEADLK_ITERATIONS + 1):
            b = next((b for b in self.blocked.values() if b.owner == owner and b.live()), None)
            if b is None or b.blocker is None:
                return False
            if b.blocker == caller:
                return True
            owner = b.blocker
        return False

    # -- flock ---------------------------------------------------------------------------------
    def flock(self, key: Key, f: OpenFile, type: int, nonblock: bool) -> None:  # noqa: A002
        """flock(2) for description f (type F_RDLCK/F_WRLCK/F_UNLCK).  A conversion drops
        the old lock first, as Linux does; a conflict is EWOULDBLOCK with LOCK_NB, else a
        sleep on the inode's queue."""
        ctx = self.inode(key)
        mine = next((lk for lk in ctx.flock if lk.owner is f), None)
        if mine is not None:
            if mine.type == type:
                return
            ctx.flock.remove(mine)
            ctx.queue.notify()
        if type != F_UNLCK:
            req = FileLock(f, -1, type, 0, OFFSET_MAX)
            if any(lk.blocks(req) for lk in ctx.flock):
                if nonblock:
                    self._tidy(key)
                    raise GuestError(E.EWOULDBLOCK)
                raise Block(ctx.queue)
            ctx.flock.append(req)
        self._tidy(key)

    # -- releasing -----------------------------------------------------------------------------
    def _holds(self, pid: int, f: OpenFile | None) -> bool:
        """Whether pid holds a POSIX lock or f (when given) any lock."""
        return any(lk.owner == pid or lk.owner is f for ctx in self.inodes.values()
                   for lk in ctx.posix + ctx.flock)

    def closed(self, pid: int, f: OpenFile, last: bool) -> None:
        """Process pid closed a descriptor of f (`last`: f's last one): its POSIX locks on
        the inode go (locks_remove_posix), and at the last close f's OFD and flock locks."""
        if not self._holds(pid, f if last else None):
            return  # the common case, and no stat of a file nobody locked
        try:
            key = inode_of(f)[0]
        except GuestError:
            return
        ctx = self.inodes.get(key)
        if ctx is None:
            return
        gone = [lk for lk in ctx.posix if lk.owner == pid or (last and lk.owner is f)]
        gone += [lk for lk in ctx.flock if last and lk.owner is f]
        if gone:
            ctx.posix = [lk for lk in ctx.posix if lk not in gone]
            ctx.flock = [lk for lk in ctx.flock if lk not in gone]
            ctx.queue.notify()
        self._tidy(key)
