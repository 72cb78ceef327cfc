"""The `vkckpt` command line: argument parsing only; the work lives in the library."""

from __future__ import annotations

import argparse
import os
import sys

from vkckpt import __version__
from vkckpt.config import KernelConfig, ProcessSpec, load_config, parse_size
from vkckpt.errors import ConfigError, VkError
from vkckpt.kernel import Deadlock
from vkckpt.runner import EXIT_VKERNEL_ERROR, ProgramError, host_to_guest_program, run


class _Parser(argparse.ArgumentParser):
    """argparse that exits with vkckpt's error status for usage errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_VKERNEL_ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vkckpt", description="A virtual kernel for static x86-64 Linux programs "
                "with checkpoint and restore.")
    p.add_argument("--version", action="version", version=f"vkckpt {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    r = sub.add_parser("run", help="run a program (or a YAML-described vkernel)",
                       description="Run PROGRAM as pid 1 in a fresh vkernel, or the vkernel "
                       "described by -c FILE. Exits with pid 1's status (128+N if killed by "
                       "signal N); 125 when the vkernel fails, 126 when the program cannot "
                       "be executed, 127 when it is not found.")
    r.add_argument("program", nargs="?", help="program: a host path inside --root, or a "
                   "guest path")
    r.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the program")
    r.add_argument("-c", "--config", metavar="FILE", help="vkernel description (vkckpt.yaml(5))")
    r.add_argument("--root", metavar="DIR", help="guest root directory (default: .)")
    r.add_argument("-e", "--env", metavar="NAME=VALUE", action="append", default=[],
                   help="set a variable in the program's environment (repeatable)")
    r.add_argument("--quantum", type=int, metavar="BLOCKS", help="time slice in translated "
                   "blocks (default 50000)")
    r.add_argument("--memory-limit", metavar="SIZE", help="mapped memory per process, "
                   "e.g. 512M (default 4G)")
    r.add_argument("--seed", type=int, metavar="N", help="seed of the guest-visible random "
                   "stream (default 0)")
    r.add_argument("--trace-syscalls", action="store_true", help="log every system call "
                   "to stderr, strace-style")
    return p


def _config_from(args: argparse.Namespace) -> KernelConfig:
    if args.config:
        if args.program:
            raise ConfigError("give either PROGRAM or -c FILE, not both")
        cfg = load_config(args.config)
        if args.root:
            cfg.root = args.root
    else:
        if not args.program:
            raise ConfigError("nothing to run: give PROGRAM or -c FILE")
        root = args.root or "."
        prog = host_to_guest_program(root, args.program)
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
    if args.memory_limit:
        cfg.memory_limit = parse_size(args.memory_limit, "--memory-limit")
    if args.seed is not None:
        cfg.seed = args.seed
    cfg.trace_syscalls = args.trace_syscalls
    if not os.path.isdir(cfg.root):
        raise ConfigError(f"guest root {cfg.root}: not a directory")
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _config_from(args)
    return run(cfg).exit_code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"run": cmd_run}[args.command](args)
    except ProgramError as exc:
        print(f"vkckpt: {exc}", file=sys.stderr)
        return exc.code
    except Deadlock as exc:
        print(f"vkckpt: {exc}", file=sys.stderr)
        return EXIT_VKERNEL_ERROR
    except VkError as exc:
        print(f"vkckpt: {exc}", file=sys.stderr)
        return EXIT_VKERNEL_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
