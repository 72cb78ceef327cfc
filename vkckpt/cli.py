"""The `vkckpt` command line: argument parsing and exit codes only (work is in commands.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from vkckpt.cluster import cluster_arg
from vkckpt.cmd_fanout import add_parser as _fanout_parser
from vkckpt.cmd_fanout import cmd_fanout
from vkckpt.errors import ImageError, VkError
from vkckpt.kernel_idle import Deadlock
from vkckpt.runner import EXIT_VKERNEL_ERROR, ProgramError
from vkckpt.version import __version__

#: Exit status of inspect/verify/freeze for a bad image or request, and for usage errors.
EXIT_FAILURE, EXIT_USAGE = 1, 2
#: Subcommands that run guests exit with the guest's status, so their own errors use 125.
GUEST_COMMANDS = {"run", "thaw", "demo", "receive"}


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors exit with the subcommand's documented status."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        code = EXIT_VKERNEL_ERROR if self.prog.split()[-1] in GUEST_COMMANDS else EXIT_USAGE
        self.exit(code, f"{self.prog}: error: {message}\n")


def _freeze_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("freezing")
    g.add_argument("--freeze-at", type=int, metavar="TICKS", help="freeze at the first "
                   "scheduling point at or after this many executed blocks")
    g.add_argument("--freeze-every", type=int, metavar="TICKS", help="freeze periodically "
                   "(out.img gives out.0001.img, out.0002.img, ...; implies --continue)")
    g.add_argument("-o", "--output", metavar="IMAGE", help="image file to write")
    g.add_argument("--continue", dest="cont", action="store_true", help="keep running after "
                   "a freeze (default: stop)")
    g.add_argument("--incremental", action="store_true", help="after the first image, write "
                   "only pages changed since the previous one")
    g.add_argument("--compress", choices=("none", "zstd"), default="none", help="page "
                   "compression (default none)")
    g.add_argument("--no-control", action="store_true", help="do not listen for `vkckpt "
                   "freeze --pid` requests")
    g.add_argument("--trace-syscalls", action="store_true", help="log every system call to "
                   "stderr, strace-style")
    g.add_argument("--stats", metavar="FILE", help="write the run's outcome (status, ticks, "
                   "every process's wait status) to FILE as YAML")


def _positive(kind: type) -> Callable[[str], float]:
    """An argparse type: a finite number of that kind, greater than 0."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value
    parse.__name__ = kind.__name__
    return parse


def _key_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--key", metavar="FILE", help=f"{what} (a private file of 16 to 4096 "
                   "secret bytes outside the guest root; see vkckpt-security(7))")


def _bind_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--bind", metavar="HOST:GUEST[:ro]", action="append", default=[], help=what)


def _publish_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--publish", metavar="HOSTPORT:GUESTPORT", action="append", default=[],
                   help=what)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only` (a command name), just that command's part,
    which parses its arguments the same way (a run's start-up builds one parser of eight)."""
    p = _Parser(prog="vkckpt", description="A virtual kernel for x86-64 Linux programs "
                "with checkpoint (freeze) and restore (thaw).")
    p.add_argument("--version", action="version", version=f"vkckpt {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, add in _COMMANDS.items():
        if only is None or only == name:
            add(sub)
    return p


def _run_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run a program or a YAML-described vkernel",
                       description="Run PROGRAM as pid 1 in a fresh vkernel, or the vkernel "
                       "described by -c FILE. Exits with pid 1's status (128+N if killed by "
                       "signal N), 0 when stopped after a freeze, 125 when the vkernel fails, "
                       "126 when the program cannot be executed, 127 when it is not found.")
    r.add_argument("program", nargs="?", help="a host path inside --root, or a guest path")
    r.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the program")
    r.add_argument("-c", "--config", metavar="FILE", help="vkernel description (vkckpt.yaml(5))")
    r.add_argument("--root", metavar="DIR", help="guest root directory (default: .)")
    r.add_argument("--fs", choices=("host", "overlay"), help="overlay: the root is a "
                   "read-only lower layer, guests' changes live in images (default: host)")
    r.add_argument("--embed-root", action="store_true", help="with --fs overlay: full images "
                   "carry the lower layer too, so a thaw needs no --root")
    _bind_option(r, "mount host directory HOST on guest directory GUEST (read-only with :ro; "
                 "repeatable; see vkckpt-run(1))")
    _publish_option(r, "forward TCP connections to the host's 127.0.0.1:HOSTPORT to a guest "
                    "listener on GUESTPORT (repeatable; the run is no longer deterministic)")
    r.add_argument("-e", "--env", metavar="NAME=VALUE", action="append", default=[],
                   help="set a variable in the program's environment (repeatable)")
    r.add_argument("--quantum", type=int, metavar="BLOCKS", help="time slice in translated "
                   "blocks (default 50000)")
    r.add_argument("--cpus", type=int, metavar="N", help="host threads that run guest code of "
                   "different processes at once (default: the host's CPUs, at most 4); "
                   "results never depend on it")
    r.add_argument("--memory-limit", metavar="SIZE", help="memory of the whole vkernel "
                   "(mappings, pipes, engines), e.g. 512M (default 16G)")
    r.add_argument("--seed", type=int, metavar="N", help="seed of the guest-visible random "
                   "stream (default 0)")
    _freeze_options(r)
    _key_option(r, "seal every image written with this key")
    m = r.add_argument_group("live migration")
    m.add_argument("--migrate-at", type=int, metavar="TICKS", help="at the first scheduling "
                   "point at or after this many executed blocks, move the run to --to")
    m.add_argument("--to", metavar="HOST:PORT", help="the `vkckpt receive` to move the run "
                   "to (pre-copy, then a final freeze; this process exits once it resumed)")



def _thaw_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("thaw", help="resume a frozen vkernel from an image",
                       description="Thaw IMAGE (following its incremental chain) in this "
                       "process and run it to completion. Exit status as for run; 125 when "
                       "the image is invalid or cannot be thawed.")
    t.add_argument("image", help="image file")
    t.add_argument("--root", metavar="DIR", help="guest root (required unless the image's "
                   "recorded root is trusted, see vkckpt-thaw(1))")
    _bind_option(t, "give a bind of the image again (each one it records, same syntax as "
                 "for run; repeatable)")
    _publish_option(t, "publish a port of the image again (each one it records, as for "
                    "run; repeatable); its external connections are reset")
    t.add_argument("--allow-changed-files", action="store_true", help="thaw even if files "
                   "the guests had open changed since the freeze")
    t.add_argument("--no-sigthaw", action="store_true", help="do not deliver SIGTHAW to "
                   "processes that handle it")
    _freeze_options(t)
    _key_option(t, "require every image of the chain to be sealed with this key, and seal "
                "the images written")



def _inspect_parser(sub: argparse._SubParsersAction) -> None:
    i = sub.add_parser("inspect", help="describe an image as YAML",
                       description="Print an image's processes, threads, registers, VMAs, "
                       "signal state, page statistics and the guest-root paths it depends on "
                       "as YAML. Exit 1 for an invalid image.")
    i.add_argument("image", help="image file")
    i.add_argument("--no-registers", action="store_true", help="leave register values out")
    i.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    _key_option(i, "require the image to be sealed with this key")



def _verify_parser(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("verify", help="check an image's checksums, chain and structure",
                       description="Check every checksum of IMAGE and of its parents, the "
                       "links of the chain, and that it would thaw. Exit 0 when valid, 1 when "
                       "not.")
    v.add_argument("image", help="image file")
    v.add_argument("--root", metavar="DIR", help="guest root in which open files are "
                   "reopened (a missing file fails the check; changed ones are accepted)")
    _bind_option(v, "give a bind of the image again, as for thaw (repeatable); read-write "
                 "binds are reopened for reading only")
    v.add_argument("-q", "--quiet", action="store_true", help="print nothing; exit status only")
    _key_option(v, "require every image of the chain to be sealed with this key")



def _freeze_parser(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser("freeze", help="ask a running vkckpt to freeze",
                       description="Ask the vkckpt running with host pid PID to freeze into "
                       "IMAGE at its next scheduling point. Exit 0 when written, 1 otherwise.")
    f.add_argument("--pid", type=_positive(int), required=True, help="host pid of the "
                   "running vkckpt")
    f.add_argument("-o", "--output", metavar="IMAGE", help="image to write (or give --to)")
    f.add_argument("--to", metavar="HOST:PORT", help="instead of writing an image, move the "
                   "run to the `vkckpt receive` listening there (the run then ends)")
    f.add_argument("--stop", action="store_true", help="stop the run after the freeze")
    f.add_argument("--incremental", action="store_true", help="only pages changed since the "
                   "previous image of that run")
    f.add_argument("--timeout", type=_positive(float), default=60.0, metavar="SECONDS",
                   help="how long to wait for the answer (default 60)")



def _receive_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("receive", help="resume a vkernel sent by live migration",
                       description="Listen on HOST:PORT for one migration stream (from "
                       "`vkckpt run --migrate-at --to` or `vkckpt freeze --to`), check every "
                       "image of it as thaw does, resume the vkernel it carries in this "
                       "process and run it to completion. Exit status as for thaw; 125 when "
                       "the stream is refused (with --once) or the vkernel fails; 124 when "
                       "the sender's run ended before it could move (with --once).")
    r.add_argument("--listen", required=True, metavar="HOST:PORT", help="address to listen "
                   "on (port 0: any free port; the bound address is printed on stderr)")
    r.add_argument("--root", metavar="DIR", help="guest root, as for thaw")
    _bind_option(r, "give a bind of the image again, as for thaw (repeatable)")
    r.add_argument("--once", action="store_true", help="exit 125 when the first stream is "
                   "refused, 124 when its sender's run ended before it could move (default: "
                   "log it and wait for another)")
    r.add_argument("--timeout", type=_positive(float), default=120.0, metavar="SECONDS",
                   help="refuse a stream that sends nothing for this long (default 120)")
    r.add_argument("--no-sigthaw", action="store_true", help="do not deliver SIGTHAW to "
                   "processes that handle it")
    _freeze_options(r)
    _key_option(r, "require every image of the stream to be sealed with this key, and seal "
                "the images written")


def _demo_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="the built-in demonstration",
                       description="Build the bundled multithreaded guest, run it, freeze it "
                       "mid-run, inspect the image, thaw it in a new process and compare the "
                       "output with an uninterrupted run.")
    d.add_argument("--workdir", metavar="DIR", help="keep the demo's files here")


def _regress_parser(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("regress", help="the checkpoint regression suite (run before releases)",
                       description="Build the bundled guests, run each case's golden run, "
                       "freeze at scheduling points chosen from --seed, thaw every image in "
                       "a fresh host process and compare output, statuses, ticks and state "
                       "digests; bisect a divergence to the first differing scheduling point "
                       "and report the state that differs. Exit 0 when every case passes, 1 "
                       "otherwise, 2 for usage errors.")
    g.add_argument("--quick", action="store_true", help="the CI profile: a few workloads, 2 "
                   "points each, chains of at most 3 (default: the full profile)")
    g.add_argument("--points", type=int, metavar="K", help="freeze points per case (default "
                   "2 quick, 8 full)")
    g.add_argument("--seed", type=int, default=1, metavar="S", help="chooses the freeze "
                   "points (default 1)")
    g.add_argument("--iters", type=int, metavar="N", help="checkpoints in an iterated case "
                   "(freeze, thaw, freeze again...; default 3 quick, 4 full)")
    g.add_argument("--chain", type=int, metavar="N", help="images in an incremental chain "
                   "(default 3 quick, 6 full)")
    g.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="run cases in N "
                   "parallel host processes (default 1)")
    g.add_argument("--cluster", type=cluster_arg, metavar="SPEC", help="run the cases on a "
                   "Dask cluster: local[:N] or tcp://HOST:PORT (-j is then unused)")
    g.add_argument("-k", "--case", action="append", default=[], metavar="PATTERN",
                   help="only cases whose name contains PATTERN, or matching it as a glob, "
                   "or of that kind (repeatable)")
    g.add_argument("--junit", metavar="FILE", help="write JUnit XML results to FILE")
    g.add_argument("--workdir", metavar="DIR", help="work here and keep every file (default: "
                   "a temporary directory, kept only when a case fails)")
    g.add_argument("--fixtures", metavar="DIR", help="older-format images to thaw (default: "
                   "tests/data of the source tree)")
    g.add_argument("--no-bisect", action="store_true", help="report divergences without "
                   "bisecting them")
    g.add_argument("--list", action="store_true", help="list the selected cases and exit")
    g.add_argument("-v", "--verbose", action="store_true", help="log every step on stderr")


def _check_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("check", help="what this host gives vkckpt",
                       description="Check what this host gives vkckpt (the emulator, host "
                       "descriptors, the native block hook, exact dirty tracking, lazy thaw, "
                       "openat2, zstd, memory), one line each saying what it changes. Exit 0 "
                       "when everything run, freeze and thaw need is there, 1 otherwise.")
    c.add_argument("--json", action="store_true", help="print the checks as JSON")


def _merge_parser(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("merge", help="fold an incremental chain into one full image",
                       description="Write the state the chain ending at IMAGE holds as one "
                       "full image FULL, which thaws exactly as IMAGE does. Exit 0 when "
                       "written, 1 when IMAGE is invalid or cannot be thawed here.")
    m.add_argument("image", metavar="IMAGE", help="the chain's newest image")
    m.add_argument("-o", "--output", required=True, metavar="FULL", help="image to write")
    m.add_argument("--root", metavar="DIR", help="guest root, as for thaw")
    _bind_option(m, "give a bind of the image again, as for thaw (repeatable)")
    m.add_argument("--compress", choices=("none", "zstd"), default="none",
                   help="page compression of FULL (default none)")
    _key_option(m, "require every image of the chain to be sealed with this key, and seal "
                "FULL with it")


def _rebase_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("rebase", help="re-parent an incremental image onto an equal base",
                       description="Write IMAGE as OUT whose parent is BASE, which must hold "
                       "the state of IMAGE's parent (typically its vkckpt merge). Exit 0 "
                       "when written, 1 when refused.")
    r.add_argument("image", metavar="IMAGE", help="incremental image")
    r.add_argument("--onto", required=True, metavar="BASE", help="the new parent")
    r.add_argument("-o", "--output", required=True, metavar="OUT", help="image to write")
    _key_option(r, "seal OUT with this key")


def _diff_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("diff", help="what differs between two images",
                       description="Compare the vkernel state two images hold (each with its "
                       "incremental chain): threads' registers, memory page ranges by VMA, "
                       "descriptors, signal state, processes and the scheduler, one line a "
                       "difference. Exit 0 when the same, 1 when different, 2 when an image "
                       "cannot be read.")
    d.add_argument("a", metavar="A", help="image file")
    d.add_argument("b", metavar="B", help="image file")
    d.add_argument("--no-memory", action="store_true", help="leave page contents out")
    d.add_argument("--json", action="store_true", help="print the differences as JSON")


def _decode_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("decode", help="print an image as an editable YAML or JSON document",
                       description="Print IMAGE as a document: its header fields and every "
                       "record in order, which vkckpt encode turns back into the same bytes "
                       "(with --pages base64). Exit 0 when printed, 1 when IMAGE is invalid.")
    d.add_argument("image", metavar="IMAGE", help="image file")
    d.add_argument("--format", choices=("yaml", "json"), default="yaml",
                   help="document syntax (default yaml)")
    d.add_argument("--pages", choices=("none", "ref", "base64"), default="base64",
                   help="page chunks: left out, their offsets only (not encodable), or their "
                   "bytes as stored (default base64)")


def _encode_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("encode", help="write a decoded document back as an image",
                       description="Write the document FILE (from vkckpt decode, perhaps "
                       "edited) as IMAGE, recomputing the image id and digests, after the "
                       "checks every image reader runs. Exit 0 when written, 1 when FILE "
                       "does not describe a valid image.")
    e.add_argument("file", metavar="FILE", help="YAML or JSON document")
    e.add_argument("-o", "--output", required=True, metavar="IMAGE", help="image to write")
    _key_option(e, "seal IMAGE with this key (replacing a seal the document ends with)")


def _export_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("export", help="write an overlay run's files at a freeze as a tree",
                       description="Write the merged tree (lower layer + upper layer - "
                       "whiteouts) of an image of a --fs overlay run into DIR, which must be "
                       "empty or missing. Exit 1 when the image, the root or DIR is refused.")
    e.add_argument("image", help="image file (of a chain: the files at its freeze)")
    e.add_argument("dir", metavar="DIR", help="directory to create (or an empty one)")
    e.add_argument("--root", metavar="DIR", help="the lower layer, unless the image embeds "
                   "it (--embed-root); its digest must be the image's")
    _key_option(e, "require every image of the chain to be sealed with this key")


def _completion_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("completion", help="print a shell completion script",
                       description="Print the bash or zsh completion script for vkckpt, "
                       "generated from this argument parser (the package installs both).")
    c.add_argument("shell", choices=SHELLS, help="the shell to complete for")


#: Every command and what adds its parser, in --help's order.
_COMMANDS = {"run": _run_parser, "thaw": _thaw_parser, "inspect": _inspect_parser,
             "verify": _verify_parser, "freeze": _freeze_parser,
             "receive": _receive_parser, "demo": _demo_parser,
             "regress": _regress_parser, "merge": _merge_parser, "diff": _diff_parser,
             "rebase": _rebase_parser,
             "check": _check_parser, "fanout": _fanout_parser,
             "decode": _decode_parser, "encode": _encode_parser,
             "completion": _completion_parser, "export": _export_parser}
#: Shells `vkckpt completion` writes scripts for.
SHELLS = ("bash", "zsh")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    only = argv[0] if argv and argv[0] in _COMMANDS else None  # else: usage, --help, errors
    args = build_parser(only).parse_args(argv)
    from vkckpt import commands  # late: keeps --help fast
    guest = args.command in GUEST_COMMANDS
    try:
        fn = {"run": commands.cmd_run, "thaw": commands.cmd_thaw,
              "inspect": commands.cmd_inspect, "verify": commands.cmd_verify,
              "freeze": commands.cmd_freeze, "demo": _demo,
              "receive": _receive,
              "regress": commands.cmd_regress, "merge": commands.cmd_merge,
              "diff": commands.cmd_diff, "rebase": _rebase,
              "check": commands.cmd_check, "fanout": cmd_fanout,
              "decode": commands.cmd_decode, "encode": commands.cmd_encode,
              "completion": _completion, "export": _export}[args.command]
        return fn(args)
    except ProgramError as exc:
        print(f"vkckpt: {exc}", file=sys.stderr)
        return exc.code
    except ImageError as exc:
        print(f"vkckpt: {exc}", file=sys.stderr)
        return EXIT_VKERNEL_ERROR if guest else EXIT_FAILURE
    except (Deadlock, VkError) as exc:
        print(f"vkckpt: {exc}", file=sys.stderr)
        return EXIT_VKERNEL_ERROR if guest else EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


def completion_script(shell: str) -> str:
    """The completion script for shell, generated by shtab from the whole parser."""
    import shtab

    return shtab.complete(build_parser(), shell=shell)


def _completion(args: argparse.Namespace) -> int:
    sys.stdout.write(completion_script(args.shell))
    return 0


def _receive(args: argparse.Namespace) -> int:
    from vkckpt.cmd_migrate import cmd_receive
    return cmd_receive(args)


def _rebase(args: argparse.Namespace) -> int:
    from vkckpt.cmd_rebase import cmd_rebase
    return cmd_rebase(args)


def _export(args: argparse.Namespace) -> int:
    from vkckpt.cmd_overlay import cmd_export
    return cmd_export(args)


def _demo(args: argparse.Namespace) -> int:
    from vkckpt.demo import run_demo
    return run_demo(args.workdir)


if __name__ == "__main__":
    sys.exit(main())
