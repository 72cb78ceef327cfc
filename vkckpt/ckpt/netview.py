"""The network and the file layers an image holds, as `vkckpt inspect` shows them.

Sockets: one row per endpoint (socket records, with the inetsock record of an internet
one), with its kind, state, names, what is queued to be read there (bytes, messages, files
in flight) and its accept queue.  Overlay: the lower layer's digest and how many upper
entries and bytes the image carries.  Read from already-checked records (schema.check).
"""

from __future__ import annotations

import ipaddress

from vkckpt.abi import inet as I

_TYPES = {1: "stream", 2: "dgram", 5: "seqpacket"}
_FAMILIES = {I.AF_INET: "inet", I.AF_INET6: "inet6"}


def _inet_name(n: bytes | None) -> str | None:
    if n is None:
        return None
    ip = I.ip_of(n)
    if I.is_v4(ip):
        return f"{ipaddress.IPv4Address(ip[12:])}:{I.port_of(n)}"
    return f"[{ipaddress.IPv6Address(ip)}]:{I.port_of(n)}"


def _unix_name(n: bytes | None) -> str | None:
    if n is None:
        return None
    if n[:1] == b"\0":
        return "@" + n[1:].decode(errors="replace")  # the abstract namespace, as ss(8)
    return n.decode(errors="replace")


class NetView:
    """Collects sockets and overlay layers from an image's records, fed one at a time."""

    __slots__ = ("socks", "inet", "overlay", "entries", "upper_bytes")

    def __init__(self) -> None:
        self.socks: list[dict] = []
        self.inet: dict[int, dict] = {}
        self.overlay: dict | None = None
        self.entries = [0, 0]  # upper, lower layer entries
        self.upper_bytes = 0

    def record(self, rtype: str, f: dict) -> None:
        """Take what record (rtype, fields f) says about sockets or layers."""
        if rtype == "socket":
            self.socks.append(f)
        elif rtype == "inetsock":
            self.inet[f["id"]] = f
        elif rtype == "overlay":
            self.overlay = f
        elif rtype == "ovl_entry":
            self.entries[min(f["layer"], 1)] += 1
            if f["layer"] == 0 and f["kind"] == "file":
                self.upper_bytes += f["size"]

    def _row(self, s: dict) -> dict:
        o = self.inet.get(s["id"])
        name = _unix_name if o is None else _inet_name
        row = {"id": s["id"], "family": "unix" if o is None else _FAMILIES[o["family"]],
               "type": _TYPES.get(s["type"], str(s["type"])), "state": s["state"],
               "local": s["path"] or name(s["addr"])}  # only a bound AF_UNIX one has a path
        if o is not None and o.get("syn") is not None:
            row["state"] = "syn-sent"
            row["connecting_to"] = _inet_name(o["syn"])
        if o is not None and o["peer"] is not None:
            row["peer"] = _inet_name(o["peer"])
        elif s["peer"]:
            row["peer_socket"] = s["peer"]
        if s["msgs"]:
            row["queued"] = {"messages": len(s["msgs"]),
                             "bytes": sum(len(m[0]) for m in s["msgs"]),
                             "files_in_flight": sum(len(m[3]) for m in s["msgs"])}
        if s["acceptq"]:
            row["accept_queue"] = len(s["acceptq"])
        if s["shutdown"]:
            row["shutdown"] = {1: "read", 2: "write", 3: "both"}[s["shutdown"] & 3]
        if s["dead"]:
            row["closed"] = True
        return row

    def report(self) -> dict:
        """{"sockets": [...], "overlay": {...}}, each only when the image holds some."""
        out: dict = {}
        if self.socks:
            rows = [self._row(s) for s in sorted(self.socks, key=lambda s: s["id"])]
            by_id = {r["id"]: r for r in rows}
            for r in rows:  # a connection's far end by its name, as ss(8) shows it
                other = by_id.get(r.get("peer_socket"))
                if other is not None and "peer" not in r and other["local"] is not None:
                    r["peer"] = other["local"]
            out["sockets"] = rows
        if self.overlay is not None:
            out["overlay"] = {"lower_digest": self.overlay["lower"],
                              "full": self.overlay["full"],
                              "embedded_lower": self.overlay["embedded"],
                              "upper_entries": self.entries[0],
                              "upper_file_bytes": self.upper_bytes,
                              "lower_entries": self.entries[1]}
        return out
