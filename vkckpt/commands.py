"""What each `vkckpt` subcommand does, given parsed arguments (cli.py only parses)."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager

from vkckpt.ckpt.freeze import FreezePlan, drive
from vkckpt.ckpt.trust import ImageKey, check_key_outside, load_key
from vkckpt.config import KernelConfig, ProcessSpec, load_config, parse_cpus, parse_memory_limit
from vkckpt.errors import ConfigError, ImageError, VkError
from vkckpt.fs.binds import BindSpec, parse_bind
from vkckpt.fs.publish import parse_publish
from vkckpt.host.fs import OutputPath, write_atomic
from vkckpt.kernel import VKernel
from vkckpt.runner import EXIT_VKERNEL_ERROR, boot, exit_code_of, host_to_guest_program


def config_from_args(args: argparse.Namespace) -> KernelConfig:
    """The vkernel configuration `vkckpt run` describes."""
    if args.config:
        if args.program:
            raise ConfigError("give either PROGRAM or -c FILE, not both")
        if args.env:
            raise ConfigError("-e applies to PROGRAM; set env: in the -c FILE instead")
        cfg = load_config(args.config)
        if args.root:
            cfg.root = args.root
    else:
        if not args.program:
            raise ConfigError("nothing to run: give PROGRAM or -c FILE")
        root = args.root or "."
        prog = args.program if _in_binds(args.program, binds_from_args(args)) else \
            host_to_guest_program(root, args.program)
        env = {}
        for item in args.env:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise ConfigError(f"--env {item!r}: expected NAME=VALUE")
            env[name] = value
        cfg = KernelConfig(root=root, processes=[ProcessSpec(prog, [args.program, *args.args],
                                                             env)])
    if args.quantum is not None:
        if args.quantum < 1:
            raise ConfigError("--quantum must be positive")
        cfg.quantum = args.quantum
    if args.cpus is not None:
        cfg.cpus = parse_cpus(args.cpus, "--cpus")
    if args.memory_limit:
        cfg.memory_limit = parse_memory_limit(args.memory_limit, "--memory-limit")
    if args.seed is not None:
        cfg.seed = args.seed
    cfg.trace_syscalls = args.trace_syscalls
    cfg.binds = [*cfg.binds, *binds_from_args(args)]
    cfg.publish = [*cfg.publish, *publish_from_args(args)]
    cfg.fs, cfg.embed_root = args.fs or cfg.fs, args.embed_root or cfg.embed_root
    if cfg.embed_root and cfg.fs != "overlay":
        raise ConfigError("--embed-root needs --fs overlay")
    if not os.path.isdir(cfg.root):
        raise ConfigError(f"guest root {cfg.root}: not a directory")
    return cfg


def binds_from_args(args: argparse.Namespace) -> list[BindSpec]:
    """The --bind HOST:GUEST[:ro] options."""
    return [parse_bind(text) for text in getattr(args, "bind", [])]


def publish_from_args(args: argparse.Namespace) -> list[tuple[int, int]]:
    """The --publish HOSTPORT:GUESTPORT options."""
    return [parse_publish(text) for text in getattr(args, "publish", [])]


def _warn_published(ports: list[tuple[int, int]]) -> None:
    """Say once, at start, that a run with published ports depends on the outside world."""
    if ports:
        shown = ", ".join(f"127.0.0.1:{h} -> guest port {g}" for h, g in ports)
        print(f"vkckpt: published ports ({shown}): this run is not deterministic",
              file=sys.stderr, flush=True)


def _in_binds(program: str, binds: list[BindSpec]) -> bool:
    """Whether an absolute program path names a file of a bind (a guest path, then)."""
    return program.startswith("/") and any(
        (program + "/").startswith(b.guest.rstrip("/") + "/") for b in binds)


def plan_from_args(args: argparse.Namespace) -> FreezePlan:
    """When and where to freeze, from --freeze-at/--freeze-every/-o/--continue."""
    if args.freeze_at is not None and args.freeze_every is not None:
        raise ConfigError("--freeze-at and --freeze-every exclude each other")
    for opt in ("freeze_at", "freeze_every"):
        v = getattr(args, opt)
        if v is not None and v < (0 if opt == "freeze_at" else 1):
            raise ConfigError(f"--{opt.replace('_', '-')} must be positive")
    wants = args.freeze_at is not None or args.freeze_every is not None
    if wants and not args.output:
        raise ConfigError("freezing needs -o IMAGE")
    plan = FreezePlan(output=args.output, at=args.freeze_at, every=args.freeze_every,
                      cont=args.cont, incremental=args.incremental, codec=args.compress)
    plan.out = _pin("-o", args.output)  # images go beneath this directory, as it is now
    plan.migrate_at, to = migration_from_args(args)
    if to is not None:
        from vkckpt.ckpt.migrate_send import mover

        plan.mover = mover(plan, to)
    return plan


def migration_from_args(args: argparse.Namespace) -> tuple[int | None, str | None]:
    """--migrate-at TICKS --to HOST:PORT (both or neither)."""
    at, to = getattr(args, "migrate_at", None), getattr(args, "to", None)
    if (at is None) != (to is None):
        raise ConfigError("--migrate-at and --to go together")
    if at is not None and at < 0:
        raise ConfigError("--migrate-at must be positive")
    return at, to


@contextmanager
def _progress():
    """A progress bar on stderr for long freezes, when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress
    with Progress(transient=True, console=None) as bar:
        task = bar.add_task("freezing", total=1)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, 1))
        yield update


def _pin(opt: str, path: str | None) -> OutputPath | None:
    """The directory of a file given on the command line, taken before any guest runs."""
    if not path:
        return None
    try:
        return OutputPath(path)
    except OSError as e:
        raise ConfigError(f"{opt} {path}: {e.strerror}; give a new file in an existing "
                          "directory") from None


def _write_stats(out: OutputPath | None, k: VKernel, status: int | None,
                 migration: dict | None = None) -> None:
    """Write --stats atomically beneath its pinned directory (never through a symlink)."""
    if out is None:
        return
    import yaml  # each subcommand imports what only it needs: start-up is latency
    text = yaml.safe_dump({"status": status, "exit_code": None if status is None else
                           exit_code_of(status), "ticks": k.sched.ticks,
                           "statuses": dict(sorted(k.statuses.items())),
                           **({"migration": migration} if migration else {})})
    try:
        write_atomic(out.dir_fd, out.name, text.encode())
    except OSError as e:
        raise VkError(f"cannot write --stats {out.path}: {e.strerror}") from None
    finally:
        out.close()


def _run_kernel(k: VKernel, plan: FreezePlan, control: bool,
                stats: OutputPath | None = None) -> int:
    from vkckpt.ckpt.control import ControlServer

    try:
        server = ControlServer(plan.output, plan.incremental, plan.codec,
                               chain=plan.chain) if control else None
        if server is not None:
            plan.poll, plan.serve = server.pending, server.serve
        try:
            with _progress() as progress:
                status = drive(k, plan, progress)
        finally:
            if server is not None:
                server.close()
    finally:
        plan.close()
    _write_stats(stats, k, status, plan.migrated or getattr(server, "migrated", None))
    code = 0 if status is None else exit_code_of(status)
    if status is None and plan.migrated is None and not getattr(server, "migrated", None):
        k.log("vkckpt: run stopped after the freeze (use vkckpt thaw to resume)")
    if server is not None and server.failed_signal_freezes:
        k.log(f"vkckpt: {server.failed_signal_freezes} freeze(s) requested by SIGUSR1 failed: "
              f"exit status {EXIT_VKERNEL_ERROR} instead of {code}")
        return EXIT_VKERNEL_ERROR
    return code


def _key(args: argparse.Namespace) -> ImageKey | None:
    """The --key FILE, checked (ImageError when missing, shared or malformed)."""
    return load_key(args.key) if getattr(args, "key", None) else None


def cmd_run(args: argparse.Namespace) -> int:
    """vkckpt run."""
    cfg = config_from_args(args)
    plan = plan_from_args(args)
    stats = _pin("--stats", args.stats)
    key = _key(args)
    check_key_outside(key, cfg.root)
    k = boot(cfg)
    _warn_published(cfg.publish)
    plan.chain.key = key.secret if key else None
    return _run_kernel(k, plan, not args.no_control, stats)


def cmd_thaw(args: argparse.Namespace) -> int:
    """vkckpt thaw."""
    from vkckpt.ckpt.restore import ThawOptions, thaw  # a run needs none of it
    plan = plan_from_args(args)
    stats = _pin("--stats", args.stats)
    key = _key(args)
    plan.chain.key = key.secret if key else None
    _install_test_fault()
    k = thaw(args.image, ThawOptions(root=args.root, allow_changed_files=args.allow_changed_files,
                                     trace_syscalls=args.trace_syscalls,
                                     deliver_sigthaw=not args.no_sigthaw, key=key,
                                     binds=binds_from_args(args),
                                     publish=publish_from_args(args)),
             chain=plan.chain)
    _warn_published(k.publish.ports)
    if k.exit_status is not None:
        plan.close()
        _write_stats(stats, k, k.exit_status)
        return exit_code_of(k.exit_status)
    return _run_kernel(k, plan, not args.no_control, stats)


def _install_test_fault() -> None:
    """VKCKPT_TEST_FAULT (set for `vkckpt regress`'s self-test, inherited by the thaws it
    starts): plant that restore bug in this process (vkckpt/testing/fault.py)."""
    if os.environ.get("VKCKPT_TEST_FAULT"):
        from vkckpt.testing.fault import install_from_env

        install_from_env()


def cmd_inspect(args: argparse.Namespace) -> int:
    """vkckpt inspect: the image as YAML on stdout."""
    import yaml

    from vkckpt.ckpt.inspect import describe

    info = describe(args.image, registers=not args.no_registers, key=_key(args))
    if args.json:
        import json
        print(json.dumps(info, indent=1))
    else:
        sys.stdout.write(yaml.safe_dump(info, sort_keys=False, width=100))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """vkckpt verify: checksums, chain and structure."""
    import yaml

    from vkckpt.ckpt.inspect import verify

    report = verify(args.image, args.root, _key(args), binds_from_args(args))
    if not args.quiet:
        sys.stdout.write(yaml.safe_dump(report, sort_keys=False))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """vkckpt merge HEAD -o FULL: the chain's state as one full image.  The head is thawed
    in memory (no guest code runs, no SIGTHAW) and frozen again, which writes exactly the
    state thawing the chain gives (freeze -> thaw -> freeze is byte-identical)."""
    from vkckpt.ckpt.chain import ImageChain
    from vkckpt.ckpt.restore import ThawOptions, thaw
    from vkckpt.ckpt.snapshot import write_image

    key = _key(args)
    k = thaw(args.image, ThawOptions(root=args.root, deliver_sigthaw=False, key=key,
                                     binds=binds_from_args(args), lazy=False,
                                     refreeze=True))
    try:
        chain = ImageChain()
        chain.key = key.secret if key else None
        res = write_image(k, args.output, chain=chain, codec=args.compress)
    finally:
        k.shutdown()
    print(f"{args.output}: full image of {args.image} (tick {k.sched.ticks}, "
          f"{res.pages} pages)")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    """vkckpt diff A B: 0 when the images hold the same vkernel state, 1 when they differ,
    2 when either cannot be read."""
    import json

    from vkckpt.regress.imagediff import diff_states
    from vkckpt.regress.imagestate import load_state

    try:
        a, b = load_state(args.a), load_state(args.b)
    except ImageError as exc:
        print(f"vkckpt diff: {exc}", file=sys.stderr)
        return 2
    found = diff_states(a, b, memory=not args.no_memory, labels=("A", "B"))
    if args.json:
        print(json.dumps([{"category": f.category, "text": f.text} for f in found], indent=1))
    else:
        for f in found:
            print(f"{f.category:<10} {f.text}")
    return 1 if found else 0


def cmd_check(args: argparse.Namespace) -> int:
    """vkckpt check: 0 when every needed check holds, 1 otherwise."""
    import dataclasses
    import json

    from vkckpt.ckpt.hostcheck import checks, report

    results = checks()
    lines, code = report(results)
    if args.json:
        print(json.dumps([dataclasses.asdict(c) for c in results], indent=1))
    else:
        print("\n".join(lines))
    return code


def cmd_decode(args: argparse.Namespace) -> int:
    """vkckpt decode IMAGE: the image as an editable YAML or JSON document on stdout."""
    from vkckpt.image.doctext import dump
    from vkckpt.image.document import to_document

    sys.stdout.write(dump(to_document(args.image, args.pages), args.format))
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    """vkckpt encode FILE -o IMAGE: a decoded document as an image, checksums recomputed,
    checked by the reader before it is written."""
    from vkckpt.image.doctext import MAX_DOCUMENT, load
    from vkckpt.image.document import assemble, check_bytes, from_document

    key = _key(args)
    try:
        with open(args.file, "rb") as f:
            text = f.read(MAX_DOCUMENT + 1)
    except OSError as e:
        raise ImageError(f"cannot read document {args.file}: {e.strerror}") from None
    try:
        doc = load(text)
        header, payloads = from_document(doc)
    except ImageError as e:
        raise ImageError(f"{args.file}: {e}") from None
    data = assemble(header, payloads, key.secret if key else None)
    try:
        stats = check_bytes(data, key.secret if key else None)
    except ImageError as e:
        raise ImageError(f"{args.file} does not encode to a valid image: {e}") from None
    out = OutputPath(args.output)
    try:
        write_atomic(out.dir_fd, out.name, data)
    except OSError as e:
        raise ImageError(f"cannot write checkpoint image {args.output}: {e.strerror}") from None
    finally:
        out.close()
    note = " (no page chunks: decoded with --pages none)" if doc["pages"] == "none" else ""
    print(f"{args.output}: {stats['records']} records, {stats['pages']} pages{note}")
    return 0


def cmd_freeze(args: argparse.Namespace) -> int:
    """vkckpt freeze --pid: ask a running vkckpt to freeze."""
    from vkckpt.ckpt.control_client import request_freeze, shown

    if (args.output is None) == (args.to is None):
        print("vkckpt freeze: give -o IMAGE or --to HOST:PORT", file=sys.stderr)
        return 2
    ans = request_freeze(args.pid, args.output, args.stop, args.incremental, args.timeout,
                         args.to)
    if not ans["ok"]:
        print(f"vkckpt: freeze failed: {shown(ans['error'])}", file=sys.stderr)
        return 1
    print(f"{shown(ans['image'])} (tick {ans['ticks']}, image id {ans['image_id']})")
    return 0


def cmd_regress(args: argparse.Namespace) -> int:
    """vkckpt regress: the checkpoint regression suite; 0 when every case passes."""
    import shutil
    import tempfile
    from pathlib import Path

    from vkckpt.regress import cases as C
    from vkckpt.regress import report
    from vkckpt.regress.run import run_suite

    for opt, low in (("points", 1), ("iters", 2), ("chain", 2), ("jobs", 1)):
        v = getattr(args, opt)
        if v is not None and v < low:
            print(f"vkckpt regress: --{opt} must be at least {low}", file=sys.stderr)
            return 2
    profile = C.QUICK if args.quick else C.FULL
    cases = C.select(C.build_cases(profile, points=args.points, iters=args.iters,
                                   chain=args.chain,
                                   fixtures=Path(args.fixtures) if args.fixtures else None),
                     args.case)
    if not cases:
        print(f"vkckpt regress: no case matches {' '.join(args.case)}", file=sys.stderr)
        return 2
    if args.list:
        for c in cases:
            print(f"{c.name}\t{c.kind}\t{c.planned}")
        return 0
    _install_test_fault()
    keep = args.workdir is not None
    work = Path(args.workdir) if keep else Path(tempfile.mkdtemp(prefix="vkckpt-regress-"))
    work.mkdir(parents=True, exist_ok=True)

    def progress(msg: str) -> None:
        print(f"vkckpt regress: {msg}", file=sys.stderr, flush=True)

    progress(f"{profile.name} profile, {len(cases)} case(s), seed {args.seed}, "
             f"{args.jobs} job(s), work in {work}")
    if args.cluster is not None:
        from vkckpt.regress.spread import run_on_cluster
        results = run_on_cluster(cases, args.cluster, seed=args.seed, bisect=not args.no_bisect,
                                 verbose=args.verbose, progress=progress)
    else:
        results = run_suite(cases, work, seed=args.seed, jobs=args.jobs,
                            bisect=not args.no_bisect, progress=progress, verbose=args.verbose)
    report.print_table(results)
    report.print_failures(results)
    if args.junit:
        Path(args.junit).write_text(report.junit_xml(results))
    ok = all(r.ok for r in results)
    if ok and not keep:
        shutil.rmtree(work, ignore_errors=True)
    elif not ok:
        progress(f"files of the failed cases are kept in {work}")
    return 0 if ok else 1
