"""Saved forms of AF_UNIX sockets: one `socket` record per endpoint and one `unixns` record
for the name space, both written only when the vkernel has sockets.

Endpoints are saved by id, and name each other (peer, accept queue, a message's sender) by
id; a message's in-flight files are saved `file` records named by file id (the freeze saves
every file a queue holds, see `carried`).  A thaw makes the endpoints first, then the files
(a socket file names its endpoint), then fills the queues (`link_messages`), which takes
one reference to each in-flight file as the live queue held it; `count_in_flight` then
rebuilds the garbage collector's in-flight counts (never saved).
"""

from __future__ import annotations

from vkckpt.abi import socket as S
from vkckpt.errors import ImageError
from vkckpt.fieldtypes import Maybe
from vkckpt.fs.unix import STATES, Message, UnixSocket
from vkckpt.fs.unix_file import SocketFile, unix_files
from vkckpt.fs.unix_ns import AUTOBIND_SPACE
from vkckpt.image.migrate import migration

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.ops import OpenFile
    from vkckpt.fs.unix_ns import UnixNamespace
    from vkckpt.threads.wait import WaitQueue
    from vkckpt.vmspace.account import MemAccount

SOCKET_VERSION = 1
NS_VERSION = 2  # 2: socket inodes are the kernel record's inode_meta kinds, not paths here
_CRED = Maybe(("u32", "u32", "u32"))
SOCKET_SCHEMA = {
    "id": "u64", "type": "u32", "state": "str", "addr": "?bytes", "path": "?str",
    "bound": "bool", "peer": "u64", "acceptq": ["u64"], "backlog": "u32", "shutdown": "u32",
    "err": "u32", "passcred": "bool", "reuseaddr": "bool", "sndbuf": "u32", "rcvbuf": "u32",
    "peercred": _CRED, "own_cred": _CRED, "wmem": "i64", "dead": "bool",
    "msgs": [("bytes", "?bytes", "u64", ["u64"], _CRED, "u64")],
}
#: v1_inodes: only in a record migrated from v1, the socket inodes' guest paths v1 listed.
NS_SCHEMA = {"next_id": "u64", "next_auto": "u32", "v1_inodes": ["str"]}
RECORDS = {"socket": (SOCKET_VERSION, SOCKET_SCHEMA), "unixns": (NS_VERSION, NS_SCHEMA)}
#: The fields of the `file` record a socket file adds (fs/state.py's FILE_SCHEMA takes them).
FILE_FIELDS = {"sock": "u64", "cred": ("u32", "u32", "u32")}
#: UnixSocket attributes not saved as such, and why.
TRANSIENT = {"poll_q": "the kernel's readiness queue", "event_q": "watchers only: epoll "
             "items re-register", "recvq": "saved as msgs",
             "inet": "an internet socket's part: its inetsock record (fs/inet_state.py)",
             "mem": "the kernel's memory account, charged again at thaw",
             "charged": "cost() of the saved budgets, charged again at thaw"}
MAX_MSGS = 1 << 16      # more queued messages than an image may ask a thaw to rebuild
MAX_QUEUED = 1 << 24    # bytes one endpoint's queue may hold in an image
MAX_SOCKETS = 1 << 16


def _reach(start: list[UnixSocket]) -> list[UnixSocket]:
    """Every endpoint reachable from start through peers, accept queues and senders."""
    seen: dict[int, UnixSocket] = {}
    todo = list(start)
    while todo:
        s = todo.pop()
        if s.id in seen:
            continue
        seen[s.id] = s
        todo += [s.peer] if s.peer is not None else []
        todo += s.acceptq
        todo += [m.sender for m in s.recvq if m.sender is not None]
    return [seen[i] for i in sorted(seen)]


def carried(f: OpenFile) -> list[OpenFile]:
    """The in-flight files the queues reachable from socket file f hold (none for others)."""
    if not isinstance(f, SocketFile):
        return []
    return [g for s in _reach([f.sock]) for m in s.recvq for g in m.fds]


def sockets_of(files: list[OpenFile]) -> list[UnixSocket]:
    """The endpoints the saved files reach, by id."""
    return _reach([f.sock for f in files if isinstance(f, SocketFile)])


def in_flight(ns: UnixNamespace) -> list[OpenFile]:
    """The in-flight socket files, by socket id: a freeze saves those no descriptor reaches
    too (garbage until the collector next runs), so the thaw collects them when the run
    would have."""
    return [f for f, _ in sorted(ns.gc.inflight.values(), key=lambda e: e[0].sock.id)]


def save_file(f: SocketFile, d: dict) -> None:
    d["sock"] = f.sock.id
    d["cred"] = list(f.cred)


def _cred(c: tuple | None) -> list | None:
    return None if c is None else list(c)


def save_socket(s: UnixSocket, ns: UnixNamespace, fids: dict[int, int]) -> dict:
    """One endpoint; fids maps id(file) -> saved file id (every in-flight file has one)."""
    bound = ns.abstract.get(s.addr) is s if s.path is None else \
        any(v is s for v in ns.paths.values())
    return {"id": s.id, "type": s.type, "state": s.state, "addr": s.addr, "path": s.path,
            "bound": bool(s.addr is not None and bound),
            "peer": s.peer.id if s.peer else 0, "acceptq": [e.id for e in s.acceptq],
            "backlog": s.backlog, "shutdown": s.shutdown, "err": s.err,
            "passcred": s.passcred, "reuseaddr": s.reuseaddr, "sndbuf": s.sndbuf,
            "rcvbuf": s.rcvbuf, "peercred": _cred(s.peercred), "own_cred": _cred(s.own_cred),
            "wmem": s.wmem, "dead": s.dead,
            "msgs": [[m.data, m.addr, m.sender.id if m.sender else 0,
                      [fids[id(g)] for g in m.fds], _cred(m.cred), m.charge]
                     for m in s.recvq]}


def save_ns(ns: UnixNamespace) -> dict:
    """The counters (socket inodes are saved with the inode table's metadata)."""
    return {"next_id": ns.next_id, "next_auto": ns.next_auto}


@migration("unixns", 1)
def _ns_v1_to_v2(fields: dict) -> dict:
    """unixns v1 -> v2: the socket inodes' paths ("inodes") move to v1_inodes, which only
    a migrated record holds (a v2 image keeps them as inode kinds in the kernel record)."""
    rest = {k: v for k, v in fields.items() if k != "inodes"}
    return {**rest, "v1_inodes": list(fields["inodes"])}


def load_sockets(rows: list[dict], poll_q: WaitQueue, mem: MemAccount | None = None
                 ) -> dict[int, UnixSocket]:
    """Endpoints by id, linked to each other (their queues are filled by link_messages);
    each live one charges mem its cost (checked against the limit with the vmspaces)."""
    if len(rows) > MAX_SOCKETS:
        raise ImageError("too many socket records")
    socks: dict[int, UnixSocket] = {}
    for d in rows:
        if d["id"] in socks or d["id"] == 0 or d["state"] not in STATES or \
                d["type"] not in (1, 2, 5) or d["shutdown"] > 3:
            raise ImageError(f"socket {d['id']!r} is malformed or duplicated")
        s = socks[d["id"]] = UnixSocket(d["id"], d["type"], poll_q)
        for name in ("state", "addr", "path", "backlog", "shutdown", "err", "passcred",
                     "reuseaddr", "sndbuf", "rcvbuf", "wmem", "dead"):
            setattr(s, name, d[name])
        if not (S.SOCK_MIN_RCVBUF <= s.rcvbuf <= 2 * S.SK_BUF_MAX and
                S.SOCK_MIN_RCVBUF <= s.sndbuf <= 2 * S.SK_BUF_MAX):
            raise ImageError(f"socket {d['id']!r} has a buffer size setsockopt never gives")
        if mem is not None and not s.dead:
            s.account(mem, force=True)
        s.peercred = None if d["peercred"] is None else tuple(d["peercred"])
        s.own_cred = None if d["own_cred"] is None else tuple(d["own_cred"])
    for d in rows:
        s = socks[d["id"]]
        s.peer = _ref(socks, d["peer"], d) if d["peer"] else None
        s.acceptq = [_ref(socks, i, d) for i in d["acceptq"]]
        if len(d["msgs"]) > MAX_MSGS or sum(len(m[0]) for m in d["msgs"]) > MAX_QUEUED:
            raise ImageError(f"socket {d['id']!r} queues more than a thaw rebuilds")
    return socks


def _ref(socks: dict[int, UnixSocket], sid: int, d: dict) -> UnixSocket:
    s = socks.get(sid)
    if s is None:
        raise ImageError(f"socket {d['id']!r} names unknown socket {sid!r}")
    return s


def link_messages(socks: dict[int, UnixSocket], rows: list[dict],
                  files: dict[int, OpenFile]) -> None:
    """Fill each endpoint's queue; every in-flight file gains the reference it held."""
    for d in rows:
        s = socks[d["id"]]
        for data, addr, sender, fids, cred, charge in d["msgs"]:
            if any(fid not in files for fid in fids):
                raise ImageError(f"socket {d['id']!r}: a message carries an unknown file")
            fds = [files[fid] for fid in fids]
            for f in fds:
                f.refs += 1
            s.recvq.append(Message(data, addr, _ref(socks, sender, d) if sender else None,
                                   fds, None if cred is None else tuple(cred), charge))


def count_in_flight(socks: dict[int, UnixSocket]) -> None:
    """Count the AF_UNIX socket files the filled queues carry for the garbage collector
    (fs/unix_gc.py), as the live sends did; after inet_state.load, which tells internet
    sockets (never counted) apart."""
    for sid in sorted(socks):
        for m in socks[sid].recvq:
            for f in unix_files(m.fds):
                f.ns.gc.board([f])


def load_ns(ns: UnixNamespace, d: dict | None, rows: list[dict],
            socks: dict[int, UnixSocket]) -> None:
    """Rebuild the name space: counters, a v1 image's socket inodes, the names bound
    endpoints hold (after the kernel record marked the socket inodes)."""
    if d is None:
        return
    ns.next_id, ns.next_auto = d["next_id"], d["next_auto"] % AUTOBIND_SPACE
    if any(r["id"] >= ns.next_id for r in rows):
        raise ImageError("a socket id is past the name space's next id")
    if len(d.get("v1_inodes", [])) > MAX_SOCKETS:
        raise ImageError("the unixns record lists too many socket inodes")
    for path in d.get("v1_inodes", []):
        ns.mark_inode(path)
    for r in rows:
        s = socks[r["id"]]
        if not r["bound"] or s.dead or s.addr is None:
            continue
        if s.path is None:
            if s.addr in ns.abstract:
                raise ImageError(f"abstract name {s.addr!r} is bound twice")
            ns.abstract[s.addr] = s
        else:
            ns.adopt_path(s, s.path)
