"""Live migration over loopback TCP: downtime and total time against touched memory.

For each size the guest (memtouch) fills `touch` MiB, then changes 1% of its pages per
phase.  The run is moved to a receiver in this process (a thread: it checks the stream and
thaws the chain, then acknowledges) with the pre-copy round length set to one guest phase,
so each round after the first finds ~1% of the pages written.  `downtime_ms` is the final
stop (freeze, last image sent, received, checked, thawed) until the acknowledgement;
`total_s` includes every pre-copy round.  The issue's goal: downtime < 50 ms at 256 MiB.
The moved run is finished and its output compared with the unmoved run's (the oracle).
"""

from __future__ import annotations

import threading

from bench.common import Console, Guests, Profile, Result, config, run_until_lines
from vkckpt.ckpt import migrate_recv as R
from vkckpt.ckpt.migrate_send import migrate
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.runner import boot

DOWNTIME_TARGET_MS = 50.0  # at 256 MiB touched, 1% written per round
PHASES = 400               # memtouch phases: enough to outlast pre-copy


def _receive(sock: object, root: str, out: Console, got: dict) -> None:
    conn, _ = sock.accept()
    with conn:
        rec = R.receive(conn, None)
        got["k"] = thaw(rec.final, ThawOptions(root=root, stdout=out, stderr=out),
                        staged=rec.staged)
        R.answer(conn, True)
        rec.close()


def _one(g: Guests, touch: int) -> tuple[dict, bool]:
    args = [str(touch), str(touch), str(PHASES), "10"]
    gold_out = Console()
    gold = boot(config(g, "memtouch", args, gold_out))
    gold.run()
    out = Console()
    k = boot(config(g, "memtouch", args, out))
    run_until_lines(k, out, 2)
    t = k.sched.ticks
    run_until_lines(k, out, 3)
    phase = k.sched.ticks - t  # blocks of one 1% phase
    sock = R.listen("127.0.0.1:0")
    recv_out, got = Console(), {}
    th = threading.Thread(target=_receive, args=(sock, str(g.root), recv_out, got))
    th.start()
    st = migrate(k, f"127.0.0.1:{sock.getsockname()[1]}", None, round_ticks=phase)
    th.join()
    sock.close()
    k2 = got["k"]
    k2.run()
    same = out.text + recv_out.text == gold_out.text and k2.sched.ticks == gold.sched.ticks
    return st.as_dict(), same


def run(p: Profile, g: Guests) -> Result:
    sizes = (16, 32) if p.name == "quick" else (16, 64, 256)
    r = Result("migrate", f"live migration of memtouch over loopback ({', '.join(map(str, sizes))}"
               " MiB touched, 1% written per round)")
    for touch in sizes:
        st, same = _one(g, touch)
        r.add(f"downtime_ms_{touch}MiB", st["downtime_ms"], "ms")
        r.add(f"total_s_{touch}MiB", st["total_ms"] / 1e3, "s")
        r.add(f"rounds_{touch}MiB", st["rounds"], "rounds")
        r.add(f"last_round_pages_{touch}MiB", st["pages_per_round"][-1], "pages")
        r.notes.append(f"{touch} MiB: pages per round {st['pages_per_round']}; moved run "
                       f"{'matches' if same else 'DIFFERS FROM'} the unmoved run")
        if not same:
            raise RuntimeError(f"the moved run of {touch} MiB differs from the unmoved run")
    if 256 in sizes:
        r.target("downtime_ms_256MiB", "<=", DOWNTIME_TARGET_MS)
    return r
