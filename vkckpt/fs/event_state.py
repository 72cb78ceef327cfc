"""Saved forms of the event files: eventfd counters, epoll interest and ready lists,
timerfd settings with their armed kernel timer, and signalfd masks.

An epoll's items name their files by saved file id and descriptor number, in the order they
were added; its ready list is the same pairs in ready-list order.  Items can name files
saved after the epoll, so a thaw links them once every file exists (`link_files`), refusing
anything a live epoll could not hold.
"""

from __future__ import annotations

from vkckpt.abi.limits import NOFILE
from vkckpt.errors import ImageError
from vkckpt.fs.epoll import Epoll
from vkckpt.fs.eventfd import EventFd
from vkckpt.fs.signalfd import SignalFd
from vkckpt.fs.timerfd import CLOCKS, TimerFd

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.ops import FileServices, OpenFile

#: The fields of the `file` record these kinds add (fs/state.py's FILE_SCHEMA takes them).
SCHEMA = {"count": "u64", "semaphore": "bool", "items": [("u64", "u32", "u32", "u64")],
          "ready": [("u64", "u32")], "clock": "u32", "next": "?i64", "interval": "u64",
          "armed": ("u64", "u64"), "sigmask": "u64"}
MAX_ITEMS = 1 << 16  # more registrations than an image may ask a thaw to rebuild


def save_eventfd(f: EventFd, d: dict) -> None:
    d["count"] = f.count
    d["semaphore"] = f.semaphore


def load_eventfd(d: dict, svc: FileServices) -> EventFd:
    if d["count"] > (1 << 64) - 2:
        raise ImageError(f"eventfd {d['id']!r}: counter {d['count']} is past its maximum")
    return EventFd(d["flags"], d["count"], d["semaphore"], svc)


def save_timerfd(f: TimerFd, d: dict) -> None:
    """The clock, the next expiry and period, the expirations not read, and the kernel
    timer as [deadline, seq] ([0, 0]: not armed)."""
    d.update(clock=f.clockid, next=f.next, interval=f.interval, count=f.count,
             armed=[f.timer.deadline, f.timer.seq] if f.timer.armed else [0, 0])


def load_timerfd(d: dict, svc: FileServices) -> TimerFd:
    """A timerfd as saved, its kernel timer armed again with its sequence (that the saved
    scheduler handed it out is checked once all are armed: sched_state.check_events)."""
    clock, nxt, interval, count = d["clock"], d["next"], d["interval"], d["count"]
    at, seq = d["armed"]
    if clock not in CLOCKS or (nxt is None and (interval or seq)) or \
            (seq and at != nxt) or (seq and count):
        raise ImageError(f"timerfd {d['id']!r}: its setting is not one a live timer has")
    f = TimerFd(d["flags"], clock, svc)
    f.next, f.interval, f.count = nxt, interval, count
    if seq:
        svc.arm(f.timer, at, seq)
    return f


def save_signalfd(f: SignalFd, d: dict) -> None:
    d["sigmask"] = f.mask


def load_signalfd(d: dict, svc: FileServices) -> SignalFd:
    return SignalFd(d["flags"], d["sigmask"], svc)


def save_epoll(f: Epoll, d: dict, fids: dict[int, int]) -> None:
    """Items whose file is not saved (outside a partial freeze's scope) are left out."""
    f.purge()
    kept = [i for i in f.items.values() if id(i.file) in fids]
    d["items"] = [[fids[id(i.file)], i.fd, i.events, i.data] for i in kept]
    d["ready"] = [[fids[id(i.file)], i.fd] for i in f.rdlist if id(i.file) in fids]


def load_epoll(d: dict, svc: FileServices) -> Epoll:
    """An empty epoll; link_files gives it its items."""
    return Epoll(d["flags"], svc)


def link_files(files: dict[int, OpenFile], rows: list[dict]) -> None:
    """Give each thawed epoll its items and ready list (files: the thaw's, by saved id)."""
    for d in rows:
        ep = files.get(d["id"])
        if isinstance(ep, Epoll):
            _link(ep, d, files)
    for ep in files.values():
        if isinstance(ep, Epoll) and any(isinstance(i.file, Epoll) and ep.reaches(i.file)
                                         for i in ep.items.values()):
            raise ImageError("epoll items form a loop or nest too deep")


def _link(ep: Epoll, d: dict, files: dict[int, OpenFile]) -> None:
    items, ready = d.get("items", []), d.get("ready", [])
    if len(items) > MAX_ITEMS or len(ready) > len(items):
        raise ImageError(f"epoll {d['id']!r}: too many items")
    by_key = {}
    for fid, fd, events, data in items:
        target = files.get(fid)
        if target is None or target is ep or not target.pollable or not 0 <= fd < NOFILE \
                or (fid, fd) in by_key:
            raise ImageError(f"epoll {d['id']!r}: item ({fid!r}, {fd!r}) is not one a live "
                             "epoll could hold")
        by_key[(fid, fd)] = ep.add(target, fd, events, data, check_ready=False)
    for fid, fd in ready:
        item = by_key.get((fid, fd))
        if item is None or item.ready:
            raise ImageError(f"epoll {d['id']!r}: ready list names ({fid!r}, {fd!r}) "
                             "twice or outside its items")
        item.ready = True
        ep.rdlist.append(item)
