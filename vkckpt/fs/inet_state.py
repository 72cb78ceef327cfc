"""Saved forms of internet sockets: one `inetsock` record per AF_INET or AF_INET6 endpoint
(beside its `socket` record, which holds its queues and state) and one `inetns` record for
the port space, both written only when the vkernel has internet sockets.

A thaw rebuilds the port space from the endpoints that held a port (oldest socket id
first, as they were bound in id order on no vkernel that could tell otherwise: lookups
prefer exact addresses, so the order among equals only picks between SO_REUSEPORT
sharers)."""

from __future__ import annotations

from vkckpt.abi import inet as I
from vkckpt.errors import ImageError
from vkckpt.fs.inet import InetOpts

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.inet_ns import InetNamespace
    from vkckpt.fs.unix import UnixSocket

INETSOCK_VERSION = 1
INETNS_VERSION = 1
INETSOCK_SCHEMA = {
    "id": "u64", "family": "u32", "reuseport": "bool", "v6only": "bool", "nodelay": "bool",
    "keepalive": "bool", "keepidle": "u32", "keepintvl": "u32", "keepcnt": "u32",
    "linger": ("u32", "u32"), "peer": "?bytes", "bound": "bool", "syn": "bytes",
}
INETNS_SCHEMA = {"next_port": "u32"}
RECORDS = {"inetsock": (INETSOCK_VERSION, INETSOCK_SCHEMA),
           "inetns": (INETNS_VERSION, INETNS_SCHEMA)}
_FLAGS = ("reuseport", "v6only", "nodelay", "keepalive", "keepidle", "keepintvl", "keepcnt",
          "bound")
NAME_LEN = 18


def wanted(socks: list[UnixSocket], ns: InetNamespace) -> bool:
    """Does this image need the internet records (any internet socket, or a used port)?"""
    return any(s.inet is not None for s in socks) or ns.next_port != I.EPHEMERAL_LOW


def save_socket(s: UnixSocket) -> dict:
    o = s.inet
    d = {"id": s.id, "family": o.family, "linger": list(o.linger), "peer": o.peer}
    d.update({k: getattr(o, k) for k in _FLAGS})
    if o.syn is not None:  # only while a connect waits: older images stay byte-identical
        d["syn"] = o.syn
    return d


def save_ns(ns: InetNamespace) -> dict:
    return {"next_port": ns.next_port}


def _name_ok(n: object) -> bool:
    return n is None or (isinstance(n, bytes) and len(n) == NAME_LEN)


def load(ns: InetNamespace, ns_rows: list[dict], rows: list[dict],
         socks: dict[int, UnixSocket]) -> None:
    """Give each endpoint named by an inetsock record its internet part; fill the port
    space.  Bounds: ids, families, names of 18 bytes, ephemeral counter in range."""
    if len(ns_rows) > 1 or (rows and not ns_rows):
        raise ImageError("an image with internet sockets holds exactly one inetns record")
    if ns_rows:
        port = ns_rows[0]["next_port"]
        if not I.EPHEMERAL_LOW <= port <= I.EPHEMERAL_HIGH:
            raise ImageError(f"inetns next_port {port!r} is outside the ephemeral range")
        ns.next_port = port
    for d in sorted(rows, key=lambda r: r["id"]):
        s = socks.get(d["id"])
        if s is None or s.inet is not None or d["family"] not in (I.AF_INET, I.AF_INET6) \
                or s.type not in (1, 2):
            raise ImageError(f"inetsock {d['id']!r} names no fitting socket")
        syn = d.get("syn")
        if not (_name_ok(d["peer"]) and _name_ok(s.addr) and _name_ok(syn)) or \
                any(m.addr is not None and not _name_ok(m.addr) for m in s.recvq):
            raise ImageError(f"inetsock {d['id']!r} has a malformed address")
        if d["linger"][0] > 1 or d["keepcnt"] > 127 or d["bound"] and s.addr is None or \
                syn is not None and (s.type != 1 or s.state != "unconnected"):
            raise ImageError(f"inetsock {d['id']!r} has an option out of range")
        o = s.inet = InetOpts(d["family"])
        for k in _FLAGS:
            setattr(o, k, d[k])
        o.linger, o.peer, o.syn = tuple(d["linger"]), d["peer"], syn
        if o.bound and not s.dead:
            ns.add(s)
        if syn is not None:
            ns.syn_sent[s.id] = s
