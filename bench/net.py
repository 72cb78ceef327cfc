"""Issue 15's network bench: loopback TCP throughput (one process streams MiB to a forked
reader) and connection rate (connect, accept, close on one listener), the netbench guest
run whole by `vkckpt run` (its virtual loopback), by qemu-user and natively (the host's
loopback), interleaved, medians of `repeat` runs.  Rates are of the whole command's wall
time, start-up included, so the ratios compare what a user waits for; all sides must
print the same lines."""

from __future__ import annotations

import sys

from bench.common import Guests, Profile, Result
from bench.peers import qemu, side_by_side

MIB = {"full": 1024, "quick": 16}      # tput: MiB streamed
CONNS = {"full": 10000, "quick": 500}  # conn: connections made, accepted and closed


def run(p: Profile, g: Guests) -> Result:
    r = Result("net", "loopback TCP: vkckpt run vs qemu-user vs native (wall time)")
    q = qemu()
    if q is None:
        r.notes.append("qemu-user-static is not installed: no qemu rows (make bench installs it)")
    g.add("netbench")
    prog = str(g.root / "netbench")
    rows = {"tput": (str(MIB[p.name]), "reader status 0", MIB[p.name] * 1.048576, "MB/s"),
            "conn": (str(CONNS[p.name]), "connections", float(CONNS[p.name]), "conn/s")}
    for name, (arg, want, amount, unit) in rows.items():
        sides = {"vkckpt": [sys.executable, "-m", "vkckpt", "run", "--root", str(g.root),
                            "/netbench", name, arg],
                 "native": [prog, name, arg]}
        if q is not None:
            sides["qemu"] = [q, prog, name, arg]
        side_by_side(r, name, sides, p.repeat, want, None, same_output=True)
        for side in sides:
            r.add(f"{name}_{side}_rate", amount / r.metrics[f"{name}_{side}_s"], unit)
    r.notes.append(f"tput: {MIB[p.name]} MiB in 64 KiB writes to a forked reader; conn: "
                   f"{CONNS[p.name]} x (connect, accept, 1 byte, close both); rates are "
                   "of wall time, start-up included; outputs checked equal")
    return r
