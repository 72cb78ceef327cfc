"""Save and load the lock table (the optional `locks` record, written only when a lock is
held; see vkckpt-image(5)).

Owners are saved as ids: a POSIX lock's pid, an OFD or flock lock's saved file id.  Each
inode's POSIX/OFD list keeps Linux's order.  Loading checks what a hostile image could make
impossible: counts, types, ranges, owners that exist, each owner's locks sorted and apart,
no two owners' locks in conflict, sleepers that sleep on a lock queue.
"""

from __future__ import annotations

import bisect

from vkckpt.abi.fcntl import F_RDLCK, F_WRLCK, OFFSET_MAX
from vkckpt.errors import ImageError
from vkckpt.fs.locks import Blocked, FileLock, InodeLocks, LockTable

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.ops import OpenFile
    from vkckpt.threads.thread import Thread
    from vkckpt.threads.wait import WaitQueue

VERSION = 1
MAX_LOCKS = 1 << 14  # POSIX, OFD and flock locks together, and as many sleepers
#: The type/range table ckpt/schema.py checks.
SCHEMA = {"posix": [("u64", "u64", "str", "u64", "i32", "u32", "i64", "i64")],
          "flock": [("u64", "u64", "u64", "u32")], "blocked": [("u32", "u32", "i64")]}
RECORDS = {"locks": (VERSION, SCHEMA)}
#: Lock table attributes (LockTable, InodeLocks, FileLock, Blocked) not saved by name, and why.
TRANSIENT = {"queue": "its sleepers are in the waitq records; rebuilt from their key",
             "thread": "saved as the tid (blocked)", "inodes": "saved as each row's dev, ino",
             "owner": "saved as a pid or a file id", "posix": "a field", "flock": "a field"}


def save(table: LockTable, fids: dict[int, int], pids: set[int],
         tids: set[int]) -> dict | None:
    """The record, or None when no saved owner holds a lock; fids: id(description) -> saved
    file id, pids and tids: the live processes and threads the image holds."""
    posix, flock = [], []
    for key in sorted(table.inodes):
        ctx = table.inodes[key]
        for lk in ctx.posix:
            if isinstance(lk.owner, int):
                if lk.owner in pids:
                    posix.append([*key, "posix", lk.owner, lk.pid, lk.type, lk.start, lk.end])
            elif id(lk.owner) in fids:
                posix.append([*key, "ofd", fids[id(lk.owner)], -1, lk.type, lk.start, lk.end])
        flock += [[*key, fids[id(lk.owner)], lk.type] for lk in ctx.flock if id(lk.owner) in fids]
    if not posix and not flock:
        return None
    blocked = [[tid, b.owner, -1 if b.blocker is None else b.blocker]
               for tid, b in table.blocked.items() if b.live() and tid in tids]
    return {"posix": posix, "flock": flock, "blocked": blocked}


def load(d: dict | None, table: LockTable, pids: set[int], files: dict[int, OpenFile],
         threads: dict[int, Thread], queues: dict[tuple, WaitQueue]) -> None:
    """Fill table from the record (None: no locks), checked; every thawed lock queue is the
    one its sleepers sleep on."""
    d = d or {"posix": [], "flock": [], "blocked": []}
    rows = [d.get(n, []) for n in ("posix", "flock", "blocked")]
    if sum(len(r) for r in rows) > 2 * MAX_LOCKS:
        raise ImageError(f"locks record: more than {MAX_LOCKS} locks")
    for dev, ino, kind, owner, pid, typ, start, end in rows[0]:
        if kind == "posix" and owner in pids and pid == owner:
            who: object = owner
        elif kind == "ofd" and owner in files and pid == -1:
            who = files[owner]
        else:
            raise ImageError(f"locks record: lock owner {kind} {owner} is not in the image")
        if typ not in (F_RDLCK, F_WRLCK) or not 0 <= start <= end <= OFFSET_MAX:
            raise ImageError(f"locks record: lock type {typ} or range {start}-{end} is invalid")
        table.inode((dev, ino)).posix.append(FileLock(who, pid, typ, start, end))
    for dev, ino, fid, typ in rows[1]:
        if fid not in files or typ not in (F_RDLCK, F_WRLCK):
            raise ImageError(f"locks record: flock lock of file {fid} is invalid")
        table.inode((dev, ino)).flock.append(FileLock(files[fid], -1, typ, 0, OFFSET_MAX))
    for ctx in table.inodes.values():
        _check(ctx)
    for key, q in queues.items():
        if key[0] == "lock":
            if len(key) != 3 or not all(type(n) is int and n >= 0 for n in key[1:]):
                raise ImageError(f"wait queue key {list(key)!r} names no inode")
            table.inode((key[1], key[2])).queue = q
    for tid, owner, blocker in rows[2]:
        t = threads.get(tid)
        q = t.sleep.queue if t is not None and t.sleep is not None else None
        if q is None or q.key[0] != "lock" or t.process.pid != owner or blocker == 0 or \
                blocker < -1 or tid in table.blocked:
            raise ImageError(f"locks record: sleeper {tid} does not sleep on a lock")
        table.blocked[tid] = Blocked(t, owner, None if blocker == -1 else blocker, q)


def _check(ctx: InodeLocks) -> None:
    """Refuse a state no run can reach: an owner's locks out of order, overlapping or not
    together; two owners' locks in conflict; two flock locks of one file or beside a write
    lock."""
    seen: set[tuple] = set()
    prev = None
    for lk in ctx.posix:
        who = ("pid", lk.owner) if isinstance(lk.owner, int) else ("file", id(lk.owner))
        if prev is not None and lk.owner == prev.owner:
            if lk.start <= prev.end:
                raise ImageError("locks record: an owner's locks overlap or are out of order")
        elif who in seen:
            raise ImageError("locks record: an owner's locks are not together")
        seen.add(who)
        prev = lk
    writes = sorted((lk for lk in ctx.posix if lk.type == F_WRLCK), key=lambda lk: lk.start)
    starts = [lk.start for lk in writes]
    for i, lk in enumerate(writes[1:], 1):
        if lk.start <= writes[i - 1].end:
            raise ImageError("locks record: two write locks overlap")
    for lk in ctx.posix:
        i = bisect.bisect_right(starts, lk.end) - 1
        if lk.type != F_WRLCK and i >= 0 and writes[i].end >= lk.start:
            raise ImageError("locks record: a read lock overlaps another owner's write lock")
    owners = [id(lk.owner) for lk in ctx.flock]
    if len(set(owners)) != len(owners) or \
            (len(owners) > 1 and any(lk.type == F_WRLCK for lk in ctx.flock)):
        raise ImageError("locks record: flock locks in conflict")
