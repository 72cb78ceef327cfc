"""epoll: an interest list of (file, fd) items and a ready list (Linux's fs/eventpoll.c).

Each item watches its file's `poll_queue()`: when the file notifies an event the item wants,
the item joins the tail of the ready list (ep_poll_callback) unless it is there already.  A
wait takes the ready list, re-polls each item in order and reports those with events; a
level-triggered item that reported goes back to the tail (so a wait that fills maxevents
rotates fairly), an EPOLLET item stays off until its file notifies again, an EPOLLONESHOT item
is disabled until EPOLL_CTL_MOD; items the wait did not reach keep their place at the head.
The registration belongs to the open file description: it is dropped once the file's last
descriptor is closed (checked lazily, before every use, since no file tells its epolls).
"""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi.epoll import EP_MAX_NESTS, EP_PRIVATE_BITS, EPOLLET, EPOLLONESHOT, POLLRDNORM
from vkckpt.errors import GuestError
from vkckpt.fs.eventfd import anon_stat
from vkckpt.fs.ops import OpenFile
from vkckpt.threads.wait import WaitQueue

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.ops import FileServices


class EpItem:
    """One registration: the file and descriptor number it was added under, the events
    wanted (with EPOLLET/ONESHOT bits) and the user data; `ready` while on the ready list."""

    __slots__ = ("ep", "file", "fd", "events", "data", "ready", "cb")

    def __init__(self, ep: Epoll, file: OpenFile, fd: int, events: int, data: int) -> None:
        self.ep, self.file, self.fd = ep, file, fd
        self.events, self.data = events, data
        self.ready = False
        self.cb = self._notified  # the one bound method the file's queue holds

    def _notified(self, mask: int) -> None:
        """ep_poll_callback: a disabled ONESHOT item, or an event it does not want, is
        ignored; otherwise it becomes ready."""
        if not self.events & ~EP_PRIVATE_BITS or mask and not mask & self.events:
            return
        self.ep.make_ready(self)

    def revents(self) -> int:
        """ep_item_poll: the file's events this item wants."""
        return self.file.poll(self.events & ~EP_PRIVATE_BITS) & self.events


class Epoll(OpenFile):
    """An epoll instance; items keyed by (file, fd) in the order they were added."""

    kind = "epoll"
    pollable = True

    def __init__(self, flags: int, svc: FileServices) -> None:
        super().__init__(flags)
        self.svc = svc
        self.items: dict[tuple[int, int], EpItem] = {}
        self.rdlist: list[EpItem] = []
        self.event_q = WaitQueue(("epoll-event",))  # watchers only: epolls holding this one

    def proc_link(self) -> str:
        return "anon_inode:[eventpoll]"

    # -- the interest list ------------------------------------------------------------------
    def find(self, file: OpenFile, fd: int) -> EpItem | None:
        self.purge()
        return self.items.get((id(file), fd))

    def add(self, file: OpenFile, fd: int, events: int, data: int,
            check_ready: bool = True) -> EpItem:
        """ep_insert: watch the file; ready at once if it already has an event wanted."""
        item = EpItem(self, file, fd, events, data)
        self.items[(id(file), fd)] = item
        q = file.poll_queue()
        if q is not None:
            q.watch(item.cb)
        if check_ready and item.revents():
            self.make_ready(item)
        return item

    def modify(self, item: EpItem, events: int, data: int) -> None:
        """ep_modify: new events and data; ready if the file now has one of them (an item
        already on the ready list stays where it is)."""
        item.events, item.data = events, data
        if item.revents():
            self.make_ready(item)

    def remove(self, item: EpItem) -> None:
        """ep_remove: stop watching; off the ready list."""
        q = item.file.poll_queue()
        if q is not None:
            q.unwatch(item.cb)
        del self.items[(id(item.file), item.fd)]
        if item.ready:
            self.rdlist.remove(item)
            item.ready = False

    def purge(self) -> None:
        """Drop items whose file has no descriptor left (eventpoll_release at its close)."""
        for item in [i for i in self.items.values() if i.file.refs <= 0]:
            self.remove(item)

    def reaches(self, target: Epoll, depth: int = 0) -> bool:
        """Whether adding epoll `target` to this one makes a loop or nests too deep
        (ep_loop_check: ELOOP)."""
        if depth > EP_MAX_NESTS:
            return True
        for item in target.items.values():
            f = item.file
            if isinstance(f, Epoll) and f.refs > 0 and (f is self or self.reaches(f, depth + 1)):
                return True
        return False

    # -- the ready list ---------------------------------------------------------------------
    def make_ready(self, item: EpItem) -> None:
        """Put item at the ready list's tail (once) and tell waiters and nesting epolls."""
        if item.ready:
            return
        item.ready = True
        self.rdlist.append(item)
        self.event_q.notify(F.POLLIN | POLLRDNORM)
        self.svc.poll_q.notify()

    def collect(self, maxevents: int) -> list[tuple[int, int]]:
        """ep_send_events: up to maxevents (events, data) pairs in ready-list order."""
        self.purge()
        tx, self.rdlist = self.rdlist, []
        out: list[tuple[int, int]] = []
        done = 0
        for item in tx:
            if len(out) >= maxevents:
                break
            done += 1
            item.ready = False
            rev = item.revents()
            if not rev:
                continue
            out.append((rev, item.data))
            if item.events & EPOLLONESHOT:
                item.events &= EP_PRIVATE_BITS
            elif not item.events & EPOLLET:
                item.ready = True
                self.rdlist.append(item)
        self.rdlist = tx[done:] + self.rdlist
        return out

    # -- the file interface -----------------------------------------------------------------
    def poll(self, events: int) -> int:
        """__ep_eventpoll_poll: readable when an item on the ready list has events (those
        found without any are dropped from it)."""
        self.purge()
        for item in list(self.rdlist):
            if item.revents():
                return (F.POLLIN | POLLRDNORM) & events
            self.rdlist.remove(item)
            item.ready = False
        return 0

    def poll_queue(self) -> WaitQueue:
        return self.event_q

    def stat(self) -> bytes:
        return anon_stat()

    def release(self) -> None:
        """The last descriptor is closed: every item stops watching its file."""
        for item in list(self.items.values()):
            self.remove(item)


def check_target(ep: Epoll, target: OpenFile) -> None:
    """What epoll_ctl(ADD) refuses: a file that cannot be polled (EPERM), the epoll itself
    (EINVAL), an epoll that would make a loop or nest too deep (ELOOP)."""
    if target is ep:
        raise GuestError(E.EINVAL)
    if not target.pollable:
        raise GuestError(E.EPERM)
    if isinstance(target, Epoll) and ep.reaches(target):
        raise GuestError(E.ELOOP)
