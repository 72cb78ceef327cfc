"""Implement `vkckpt receive`: accept one migration stream, check it, resume and run it."""

from __future__ import annotations

import argparse
import socket
import sys

from vkckpt.commands import _key, _pin, _run_kernel, binds_from_args, plan_from_args
from vkckpt.errors import ImageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.ckpt.freeze import FreezePlan
    from vkckpt.ckpt.trust import ImageKey
    from vkckpt.kernel import VKernel


NOTHING_MOVED = 124  # the sender's run ended before it could move (with --once)


def cmd_receive(args: argparse.Namespace) -> int:
    """vkckpt receive: the exit status of the moved run, 125 when the stream is refused,
    NOTHING_MOVED when the sender said its run ended first (both with --once)."""
    from vkckpt.ckpt.migrate_recv import SenderEnded, listen

    plan = plan_from_args(args)
    stats = _pin("--stats", args.stats)
    key = _key(args)
    plan.chain.key = key.secret if key else None
    try:
        sock = listen(args.listen)
    except (ValueError, OSError) as exc:
        raise ImageError(f"cannot listen on {args.listen}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    try:
        while True:
            conn, _ = sock.accept()
            try:
                k = _resume(conn, args, plan, key)
                break
            except SenderEnded as exc:
                print(f"vkckpt receive: {exc}", file=sys.stderr, flush=True)
                if args.once:
                    return NOTHING_MOVED
            except ImageError as exc:
                if args.once:
                    raise
                print(f"vkckpt receive: refused a stream: {exc}", file=sys.stderr, flush=True)
    finally:
        sock.close()
    return _run_kernel(k, plan, not args.no_control, stats)


def _resume(conn: socket.socket, args: argparse.Namespace, plan: FreezePlan,
            key: ImageKey | None) -> VKernel:
    """Receive one stream from conn and thaw it; ImageError when it is refused."""
    from vkckpt.ckpt.migrate_recv import answer, receive
    from vkckpt.ckpt.restore import ThawOptions, thaw

    with conn:
        got = None
        try:
            got = receive(conn, key.secret if key else None, args.timeout)
            k = thaw(got.final, ThawOptions(root=args.root, key=key,
                                            trace_syscalls=args.trace_syscalls,
                                            deliver_sigthaw=not args.no_sigthaw,
                                            binds=binds_from_args(args)),
                     chain=plan.chain, staged=got.staged)
        except BaseException:
            answer(conn, False)
            if got is not None:
                got.close()
            raise
        answer(conn, True)  # first: removing the stream's images takes ~10 ms at 256 MiB
        got.close()
    print(f"vkckpt receive: resumed at tick {k.sched.ticks} ({got.images} images)",
          file=sys.stderr, flush=True)
    return k
