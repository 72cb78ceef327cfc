"""The freeze protocol (DragonFly style) and the run driver that decides when to freeze.

1. A freeze is requested (tick count, host signal, control socket, or checkpoint(2)).
2. SIGCKPT goes to every process that handles it; the vkernel keeps running until those
   handlers have returned, for at most QUIESCE_TICKS blocks (then it freezes anyway).
3. The image is written atomically; the run stops or continues.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from vkckpt.abi import errno as E
from vkckpt.abi import signals as S
from vkckpt.ckpt.chain import ImageChain
from vkckpt.errors import ImageError, VkError
from vkckpt.host.fs import OutputPath
from vkckpt.record import Comparable
from vkckpt.signals.pending import SigInfo
from vkckpt.task_signals import send_to_process

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.ckpt.snapshot import FreezeResult
    from vkckpt.kernel import VKernel
    from vkckpt.syscalls.sys_ckpt import CkptRequest

QUIESCE_TICKS = 2_000_000  # ~40 default time slices


def _handles(p, sig: int) -> bool:  # noqa: ANN001
    return not p.zombie and p.actions.get(sig).handler not in (S.SIG_DFL, S.SIG_IGN)


def quiesce(k: VKernel, scope: list[int] | None, limit: int = QUIESCE_TICKS,
            exclude: int | None = None) -> bool:
    """Deliver SIGCKPT and run until every handler returned; False if the bound was hit.
    `exclude` is the pid that called checkpoint(2): it chose its own point and gets none."""
    targets = [p for pid, p in sorted(k.procs.items())
               if (scope is None or pid in scope) and pid != exclude and _handles(p, S.SIGCKPT)]
    if not targets:
        return True
    for p in targets:
        send_to_process(k, p, SigInfo(S.SIGCKPT, S.SI_KERNEL))
    bit = S.sigbit(S.SIGCKPT)

    def done() -> bool:
        for p in targets:
            if p.zombie:
                continue
            if p.pending.mask & bit or any(t.ckpt_frames or t.pending.mask & bit
                                           for t in p.live_threads):
                return False
        return True

    end = k.sched.ticks + limit
    saved = k.take_request()  # run() would stop for it at once; served after the freeze
    try:
        while not done() and k.exit_status is None and k.sched.ticks < end:
            status = k.run(until_ticks=end, on_schedule_point=lambda _k: done())
            if status is not None or k.host_request:
                break
    finally:
        if saved is not None:
            k.post_request(saved)  # unless a newer one arrived meanwhile
    return done()


def freeze(k: VKernel, path: str, *, chain: ImageChain | None = None,
           scope: list[int] | None = None, incremental: bool = False,
           codec: str = "none", overrides: dict[int, int] | None = None,
           progress: Callable[[int, int], None] | None = None,
           requester: int | None = None, background: bool = False,
           dir_fd: int | None = None, durable: bool = True) -> FreezeResult:
    """Run the protocol and write the image; k must be at a scheduling point.
    chain, background: see write_image (the image extends chain; it is durable once the
    result's wait() returns).  dir_fd: the directory to create path's final name in (see
    ImageWriter).  durable=False: see write_image."""
    if not quiesce(k, scope, exclude=requester):
        k.log("vkckpt: SIGCKPT handlers did not finish within the bound; freezing anyway")
    from vkckpt.ckpt.snapshot import write_image  # a run that never freezes needs no writer

    res = write_image(k, path, chain=chain, scope=scope, incremental=incremental, codec=codec,
                      overrides=overrides, progress=progress, background=background,
                      dir_fd=dir_fd, durable=durable)
    k.log(f"vkckpt: frozen at tick {k.sched.ticks} into {res.path} ({res.pages} pages"
          f"{', incremental' if res.header.incremental else ''})")
    return res


class FreezePlan(Comparable):
    """When to freeze during a run and where images go.  Images are created beneath the
    directory of `output` as it was when open_output() ran (vkckpt run/thaw call it before
    any guest runs; otherwise the first freeze does)."""

    __slots__ = ("output", "at", "every", "cont", "incremental", "codec", "poll", "serve",
                 "results", "out", "chain", "migrate_at", "mover", "migrated")

    def __init__(
        self,
        output: str | None = None,
        at: int | None = None,
        every: int | None = None,
        cont: bool = False,
        incremental: bool = False,
        codec: str = "none",
        poll: Callable[[], bool] | None = None,      # an external request is waiting
        serve: Callable[[VKernel], bool] | None = None,  # serve it; False = stop the run
        results: list[FreezeResult] | None = None,
        chain: ImageChain | None = None,  # the images' chain (and key); a new one if None
    ) -> None:
        self.output = output
        self.at = at
        self.every = every
        self.cont = cont
        self.incremental = incremental
        self.codec = codec
        self.poll = poll
        self.serve = serve
        self.results = [] if results is None else results
        self.out: OutputPath | None = None
        self.chain = ImageChain() if chain is None else chain
        self.migrate_at: int | None = None  # --migrate-at: call mover(k) then (or at the
        # end of a run that ends first, with k.exit_status set); True: moved
        self.mover: Callable[[VKernel], bool] | None = None
        self.migrated: dict | None = None   # the migration's statistics once it moved

    def open_output(self) -> None:
        """Pin the output directory now (OSError if it cannot be); idempotent."""
        if self.output is not None and self.out is None:
            self.out = OutputPath(self.output)

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None

    def target_for(self, n: int) -> tuple[str, int]:
        """(path, directory fd) of the n-th periodic freeze's image."""
        path = self.path_for(n)
        self.open_output()
        return path, self.out.dir_fd

    def path_for(self, n: int) -> str:
        """Image path for the n-th periodic freeze (out.img -> out.0001.img)."""
        if self.output is None:
            raise VkError("no image path: give -o IMAGE")
        if self.every is None:
            return self.output
        base, ext = os.path.splitext(self.output)
        return f"{base}.{n:04d}{ext or '.img'}"


def drive(k: VKernel, plan: FreezePlan,
          progress: Callable[[int, int], None] | None = None) -> int | None:
    """Run k to completion, freezing as planned; None means the run stopped after a freeze.

    Planned freezes finish in the background: the guests run on while an image is made
    durable, and the next freeze (of any kind) or the end of the run waits for it first, so
    images appear in order and a failure stops the run with its ImageError."""
    next_at = plan.at
    if next_at is None and plan.every:
        next_at = k.sched.ticks + plan.every
    move_at = plan.migrate_at if plan.mover is not None else None
    n = 0
    pending: FreezeResult | None = None
    poll = plan.poll
    hook = None if poll is None else lambda _k: poll()
    try:
        while True:
            stop_at = next_at if move_at is None else min(move_at, next_at or move_at)
            status = k.run(until_ticks=stop_at, on_schedule_point=hook)
            if status is not None:
                if move_at is not None:
                    plan.mover(k)  # ended before --migrate-at: the mover tells the receiver
                return status
            if pending is not None:
                pending, done = None, pending
                done.wait()
            if move_at is not None and k.sched.ticks >= move_at and k.host_request is None:
                move_at = None
                if plan.mover(k):
                    return None
                continue
            if k.host_request is not None:
                serve_guest_request(k, plan)
                continue
            if plan.poll is not None and plan.poll():
                if not plan.serve(k):
                    return None
                continue
            if next_at is not None and k.sched.ticks >= next_at:
                n += 1
                path, dir_fd = plan.target_for(n)
                pending = freeze(k, path, chain=plan.chain,
                                 incremental=plan.incremental and n > 1,
                                 codec=plan.codec, progress=progress, background=True,
                                 dir_fd=dir_fd)
                plan.results.append(pending)
                if not (plan.cont or plan.every):
                    return None
                next_at = next_at + plan.every if plan.every else None
    finally:
        if pending is not None:
            pending.wait()


def serve_guest_request(k: VKernel, plan: FreezePlan) -> None:
    """Freeze for checkpoint(2): 0 in this run, the caller's retval in the thawed one."""
    req: CkptRequest = k.take_request()
    t = k.threads.get(req.tid)
    result = 0
    try:
        if req.path is not None:
            path, dir_fd = req.path, req.dir_fd
        else:
            path, dir_fd = plan.target_for(len(plan.results) + 1)
        requester = t.process.pid if t is not None else None
        plan.results.append(freeze(k, path, chain=plan.chain, scope=req.scope,
                                   incremental=plan.incremental,
                                   codec=plan.codec, overrides={req.tid: req.retval},
                                   requester=requester, dir_fd=dir_fd))
    except (ImageError, OSError, VkError) as exc:
        k.log(f"vkckpt: checkpoint(2) from tid {req.tid} failed: {exc}")
        result = -E.EIO
    finally:
        req.close()
    if t is not None and t.alive:
        t.wake(result)
