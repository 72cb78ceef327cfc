"""Garbage collection of AF_UNIX sockets in flight (Linux's net/unix/garbage.c, unix_gc).

A socket file sent in an SCM_RIGHTS message holds one reference per queued message that
carries it.  Once every reference to a socket file is such a message, and every one of those
messages is queued on a socket of that same kind, no descriptor can ever reach the set
again: a self cycle (s0 queued on s0) or a ring (a0 queued on b0, b0 on a0) would keep its
queues, the files they carry and its memory charge forever.  `UnixGc` counts the in-flight
references of each socket file (Linux's unix_sock->inflight, on gc_inflight_list) and, when
a socket is released while any are in flight (unix_release_sock), finds such sets and
purges their queues, which releases the sockets and the files they carried.

The collection is deterministic (candidates in socket id order) and bounded: it visits each
in-flight socket file once and each message queued on one once, and only while the graph of
in-flight sockets may hold a cycle (checked again only after that graph changed), as
Linux's unix_graph_maybe_cyclic.  The counts are never
saved: a thaw rebuilds them from the queues it fills (unix_state.count_in_flight).
"""

from __future__ import annotations

from vkckpt.fs.unix import LISTENING

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.ops import OpenFile
    from vkckpt.fs.unix import Message, UnixSocket
    from vkckpt.fs.unix_file import SocketFile


def drop_files(files: list[OpenFile]) -> None:
    """Drop the reference each in-flight file held (files received by read(2), or left in
    a released socket's queue): the last one releases the file."""
    for f in files:
        f.refs -= 1
        if f.refs == 0:
            f.release()


def queued(sock: UnixSocket) -> list[Message]:
    """The messages a socket's file keeps alive: its queue, and a listener's embryos'
    (Linux's scan_children)."""
    msgs = list(sock.recvq)
    if sock.state == LISTENING:
        for e in sock.acceptq:
            msgs += e.recvq
    return msgs


class UnixGc:
    """The in-flight socket files of one vkernel and their collector.

    Invariant: `inflight[id(f)]` is (f, n) where n >= 1 is how many queued messages carry f
    (n counts a file sent twice in one message twice, as it holds two references)."""

    def __init__(self) -> None:
        self.inflight: dict[int, tuple[SocketFile, int]] = {}
        self.running = False  # gc_in_progress: releases during a purge do not collect again
        #: unix_graph_maybe_cyclic, recomputed when `board` or `land` changed the graph.
        self.cyclic = False
        self.changed = False

    @property
    def total(self) -> int:
        """unix_tot_inflight."""
        return sum(n for _, n in self.inflight.values())

    def board(self, files: list[SocketFile]) -> None:
        """unix_inflight: each socket file was queued in a message."""
        for f in files:
            _, n = self.inflight.get(id(f), (f, 0))
            self.inflight[id(f)] = (f, n + 1)
            self.changed = True

    def land(self, files: list[OpenFile]) -> None:
        """unix_notinflight: each file left a queue (received, or its message dropped);
        files that are no socket's are ignored."""
        for f in files:
            ent = self.inflight.get(id(f))
            if ent is None:
                continue
            self.changed = True
            if ent[1] == 1:
                del self.inflight[id(f)]
            else:
                self.inflight[id(f)] = (ent[0], ent[1] - 1)

    def drop(self, files: list[OpenFile]) -> None:
        """Files left their queues for good (a released socket's, a purge's): no longer in
        flight, and each loses the reference its message held."""
        self.land(files)
        drop_files(files)

    def collect(self) -> None:
        """unix_gc: release the socket files only unreachable in-flight messages hold."""
        if self.running or not self.inflight:
            return
        if self.changed:
            self.cyclic, self.changed = self._cyclic(), False
        if not self.cyclic:
            return
        self.running = True
        try:
            self.drop([g for s in self.garbage() for g in _purge(s.sock)])
        finally:
            self.running = False

    def _cyclic(self) -> bool:
        """Whether the in-flight graph (f -> g: f queued on g's queues) has a cycle, which
        any garbage set has (each member's references are members' messages).  Its edges
        change only when a file is queued (board) or leaves a queue (land); an accept only
        takes edges away.  Kahn's algorithm: acyclic iff every node can be peeled off."""
        succ: dict[int, list[int]] = {k: [] for k in self.inflight}
        indeg = dict.fromkeys(self.inflight, 0)
        for k, (g, _) in self.inflight.items():
            for f in _carried(g.sock):
                if id(f) in succ:
                    succ[id(f)].append(k)
                    indeg[k] += 1
        free = [k for k, n in indeg.items() if n == 0]
        peeled = 0
        while free:
            peeled += 1
            for k in succ[free.pop()]:
                indeg[k] -= 1
                if indeg[k] == 0:
                    free.append(k)
        return peeled < len(succ)

    def garbage(self) -> list[SocketFile]:
        """The socket files every reference of which is a message queued on another of
        them, in socket id order: candidates (all references in flight) less those a
        message on a non-candidate's queue reaches, directly or through candidates."""
        cand = {id(f): f for f, n in self.inflight.values()
                if f.refs == n and not f.sock.dead}
        inner = {k: 0 for k in cand}
        for f in cand.values():
            for g in _carried(f.sock):
                if id(g) in inner:
                    inner[id(g)] += 1
        todo = [f for k, f in cand.items() if self.inflight[k][1] > inner[k]]
        reached: set[int] = set()
        while todo:
            f = todo.pop()
            if id(f) in reached:
                continue
            reached.add(id(f))
            todo += [cand[id(g)] for g in _carried(f.sock) if id(g) in cand]
        return sorted((f for k, f in cand.items() if k not in reached), key=lambda f: f.sock.id)


def _carried(sock: UnixSocket) -> list[OpenFile]:
    return [g for m in queued(sock) for g in m.fds]


def _purge(sock: UnixSocket) -> list[OpenFile]:
    """Take every message off a garbage socket's queues (unix_collect_skb): the files they
    carried, whose references the caller drops."""
    hit: list[OpenFile] = []
    owners = [sock, *(sock.acceptq if sock.state == LISTENING else [])]
    for s in owners:
        for msg in list(s.recvq):
            hit += msg.fds
            msg.fds = []
            s.consume(msg)
    return hit
