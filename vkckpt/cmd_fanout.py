"""vkckpt fanout: its arguments, and the command (runs in fanout.py, spread by cluster.py).

This module is imported by cli.py for its parser, so it imports nothing heavy at the top.
"""

from __future__ import annotations

import argparse
import sys

from vkckpt.cluster import cluster_arg

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.host.fs import OutputPath

#: Exit statuses: every run ended and was collected; a run failed (a bad image, a run not
#: ended); usage errors.
EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE = 0, 1, 2
#: Runs one fanout makes at most.
MAX_RUNS = 100_000


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The `vkckpt fanout` subcommand."""
    f = sub.add_parser("fanout", help="thaw one image many times with varied inputs",
                       description="Thaw IMAGE --runs N times, each run given its variation "
                       "of the seed, environment or console input at the thaw, run each to "
                       "the end and print one row per run (status, ticks, sha256 of its "
                       "output and of chosen guest files). Exit 0 when every run ended, 1 "
                       "when one did not (or IMAGE is invalid), 2 for usage errors.")
    f.add_argument("image", metavar="IMAGE", help="image file (its chain is shipped along)")
    f.add_argument("--root", required=True, metavar="DIR", help="guest root the image thaws "
                   "in; each run gets a copy of it")
    f.add_argument("--runs", required=True, type=int, metavar="N", help="how many thaws")
    f.add_argument("--vary", nargs="+", action="append", default=[], metavar=("KIND", "ARG"),
                   help="seed [S1,S2,...] | env NAME=V1,V2,... | stdin FILE... (repeatable; "
                   "run i takes value i of each list, cycling)")
    f.add_argument("--collect", action="append", default=[], metavar="GUESTPATH",
                   help="also report the sha256 of this guest file at the end (repeatable)")
    f.add_argument("--max-ticks", type=int, metavar="TICKS", help="stop a run that has not "
                   "ended after this many blocks (it then counts as failed)")
    f.add_argument("--no-sigthaw", action="store_true", help="do not deliver SIGTHAW")
    f.add_argument("--cluster", type=cluster_arg, metavar="SPEC", help="run on a Dask "
                   "cluster: local[:N] or tcp://HOST:PORT (default: serially, in this process)")
    f.add_argument("--jsonl", metavar="OUT", help="also write one JSON object per run to OUT")


def _usage(msg: str) -> int:
    print(f"vkckpt fanout: {msg}", file=sys.stderr)
    return EXIT_USAGE


def cmd_fanout(args: argparse.Namespace) -> int:
    """vkckpt fanout: the runs, their table on stdout, their JSONL; 0 when all ended."""
    from vkckpt import cluster, fanout

    if not 1 <= args.runs <= MAX_RUNS:
        return _usage(f"--runs must be 1 to {MAX_RUNS}")
    if len(args.collect) > fanout.MAX_COLLECT or any(not p.startswith("/")
                                                     for p in args.collect):
        return _usage(f"--collect takes at most {fanout.MAX_COLLECT} absolute guest paths")
    if args.max_ticks is not None and args.max_ticks < 1:
        return _usage("--max-ticks must be at least 1")
    try:
        vs = fanout.variants(args.runs, args.vary)
    except (ValueError, OSError) as exc:
        return _usage(str(exc))
    out = None
    if args.jsonl:
        from vkckpt.host.fs import OutputPath
        try:
            out = OutputPath(args.jsonl)
        except OSError as exc:
            return _usage(f"--jsonl {args.jsonl}: {exc.strerror}")
    try:
        payload = fanout.pack(args.image, args.root)
    except OSError as exc:
        print(f"vkckpt fanout: cannot pack {exc.filename or args.root}: {exc.strerror}",
              file=sys.stderr)
        return EXIT_RUN_FAILED
    log = cluster.stderr_progress("vkckpt fanout")
    calls = [(payload, v, tuple(args.collect), args.max_ticks, not args.no_sigthaw)
             for v in vs]
    names = [f"run {v.run}" for v in vs]
    done = _summary
    if args.cluster is None:
        rows = cluster.serial_map(fanout.run_one, calls, names, log, done)
    else:
        with cluster.open_cluster(args.cluster, log) as engine:
            shared = engine.share(payload)
            rows = engine.map(fanout.run_one, [(shared, *c[1:]) for c in calls], names, done)
    print_table(rows, args.collect)
    if out is not None:
        write_jsonl(out, rows)
        out.close()
    return EXIT_RUN_FAILED if any(r.error for r in rows) else EXIT_OK


def _summary(_: int, row: object) -> str:
    """The progress line's tail for a finished run."""
    return row.error or f"status {row.status}, {row.ticks} ticks"


def print_table(rows: list, collect: list[str], file=None) -> None:
    """One line per run: run, what varied, status, ticks, digests (first 16 hex digits)."""
    file = file or sys.stdout
    head = ["run", "seed", "env", "stdin", "status", "ticks", "stdout", "stderr", *collect]
    lines = [head]
    for r in rows:
        env = ",".join(f"{n}={v}" for n, v in r.env.items())
        lines.append([str(r.run), "-" if r.seed is None else str(r.seed), env or "-",
                      r.stdin or "-", "-" if r.status is None else str(r.status),
                      str(r.ticks), r.stdout_sha256[:16], r.stderr_sha256[:16],
                      *((r.files.get(p) or "-")[:16] for p in collect)])
    widths = [max(len(ln[i]) for ln in lines) for i in range(len(head))]
    for ln in lines:
        print("  ".join(c.ljust(w) for c, w in zip(ln, widths, strict=True)).rstrip(),
              file=file)
    for r in rows:
        if r.error:
            print(f"run {r.run}: {r.error}", file=file)


def write_jsonl(out: OutputPath, rows: list) -> None:
    """The rows as JSON Lines, written atomically (a temp file renamed over out)."""
    import json

    from vkckpt.host.fs import write_atomic

    text = "".join(json.dumps(r.record(), sort_keys=True) + "\n" for r in rows)
    write_atomic(out.dir_fd, out.name, text.encode())
