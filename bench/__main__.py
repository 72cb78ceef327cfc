"""Run the benchmarks, print a table and write JSON (default bench/results/latest.json)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import FULL, QUICK, Guests, Profile, Result

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def _benchmarks() -> dict[str, Callable[[Profile, Guests], Result | list[Result]]]:
    from bench import (
        compute,
        fanout,
        freeze,
        maps,
        migrate,
        net,
        parallel,
        peers,
        preempt,
        publish,
        scale,
        syscalls,
        thaw,
    )

    return {
        "preempt": preempt.run, "compute": compute.run, "syscalls": syscalls.run_syscalls,
        "mutex": syscalls.run_mutex, "freeze": freeze.run, "thaw": thaw.run, "scale": scale.run,
        "maps": maps.run, "peers": peers.run, "net": net.run, "parallel": parallel.run,
        "migrate": migrate.run, "publish": publish.run, "fanout": fanout.run,
    }


#: Benchmark names and what each produces (freeze also yields the "image" result).
NAMES = ("preempt", "compute", "syscalls", "mutex", "freeze", "thaw", "scale", "maps", "peers",
         "net", "parallel", "migrate", "publish", "fanout")
RESULTS = ("preempt", "compute", "syscalls", "mutex", "freeze", "image", "thaw", "scale",
           "maps", "peers", "net", "parallel", "migrate", "publish", "fanout")


def _fmt(v: float) -> str:
    if v == 0 or 0.01 <= abs(v) < 1e6:
        return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 100 else f"{v:,.0f}"
    return f"{v:.3g}"


def print_table(results: list[Result], profile: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"vkckpt benchmarks ({profile} profile)", show_lines=False)
    for col, kw in (("benchmark", {}), ("metric", {}), ("value", {"justify": "right"}),
                    ("unit", {}), ("target", {"justify": "right"}), ("met", {})):
        table.add_column(col, **kw)
    for r in results:
        checks = {c.metric: c for c in r.checks}
        first = True
        for name, value in r.metrics.items():
            c = checks.get(name)
            table.add_row(r.name if first else "", name, _fmt(value), r.units.get(name, ""),
                          f"{c.op} {_fmt(c.target)}" if c else "",
                          ("[green]yes[/]" if c.ok else "[red]NO[/]") if c else "")
            first = False
        for note in r.notes:
            table.add_row("", f"[dim]{note}[/]", "", "", "", "")
        table.add_section()
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes (< 60 s in all)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="FILE",
                    help=f"where to write the results (default {DEFAULT_JSON})")
    ap.add_argument("--only", default="", metavar="NAME,...",
                    help=f"run only these benchmarks ({', '.join(NAMES)})")
    args = ap.parse_args(argv)
    only = [n for n in args.only.split(",") if n]
    unknown = set(only) - set(NAMES)
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    profile = QUICK if args.quick else FULL
    benches = _benchmarks()
    g = Guests()
    results: list[Result] = []
    started = time.time()
    try:
        for name in NAMES:
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            got = benches[name](profile, g)
            secs = time.perf_counter() - t0
            for r in got if isinstance(got, list) else [got]:
                r.seconds = secs
                results.append(r)
            print(f"{name}: {secs:.1f} s", file=sys.stderr)
    finally:
        g.cleanup()
    print_table(results, profile.name)
    checks = [c for r in results for c in r.checks]
    doc = {
        "profile": profile.name,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "host": {"python": platform.python_version(), "machine": platform.machine(),
                 "cpus": os.cpu_count(), "kernel": platform.release()},
        "benchmarks": {r.name: r.to_json() for r in results},
        "summary": {"targets": len(checks), "met": sum(c.ok for c in checks)},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{doc['summary']['met']}/{doc['summary']['targets']} targets met; "
          f"results in {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
