"""Work spread over a Dask distributed cluster (`--cluster local[:N]` or `tcp://HOST:PORT`).

This module alone imports `distributed`, and only when a cluster is opened, so commands that
do not use one never load it.  Tasks are module-level functions called by reference (each
worker imports vkckpt itself); their arguments and results are plain picklable values, images
and guest roots as bytes, so workers need no filesystem in common with the client: a task
writes what it needs into its own temporary directory.

Local workers are processes of one thread each: a task runs a vkernel in the worker's own
process, one at a time.  A vkernel's state is its VKernel object; what is process-wide
(the engine pool, CPU-quirk offsets, the ELF cache, the dirty-page tracker's registry) are
caches keyed by what they describe, which the regression harness already shares between
successive kernels of one process.  A worker that dies has its tasks scheduled again on
another (the scheduler's allowed failures), and a task that raises is retried (RETRIES).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from vkckpt.errors import VkError

#: Times a task that raised runs again elsewhere before its error is final.
RETRIES = 2
#: Times a task may be on a worker that died before the scheduler gives it up (local only).
ALLOWED_FAILURES = 4
#: Seconds to wait for a scheduler to answer, or for a local cluster's workers to start.
CONNECT_TIMEOUT = 60


class ClusterError(VkError):
    """A cluster that cannot be used, or a task that failed on every try."""


class ClusterSpec:
    """What --cluster names: a local cluster of `workers` processes, or a scheduler."""

    __slots__ = ("address", "workers")

    def __init__(self, workers: int = 0, address: str = "") -> None:
        self.workers = workers   # local: worker processes (0 for a scheduler address)
        self.address = address   # tcp://HOST:PORT of an existing scheduler, or ""

    def __repr__(self) -> str:
        return self.address or f"local:{self.workers}"


def parse_spec(text: str) -> ClusterSpec:
    """Parse `local`, `local:N` (1 <= N <= 256) or `tcp://HOST:PORT`; ValueError says why."""
    if text == "local":
        return ClusterSpec(workers=max(1, os.cpu_count() or 1))
    if text.startswith("local:"):
        n = text[len("local:"):]
        if not n.isdigit() or not 1 <= int(n) <= 256:
            raise ValueError(f"{text!r}: N in local:N must be 1 to 256")
        return ClusterSpec(workers=int(n))
    if text.startswith("tcp://"):
        host, sep, port = text[len("tcp://"):].rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r}: a scheduler address is tcp://HOST:PORT")
        return ClusterSpec(address=text)
    raise ValueError(f"{text!r}: give local, local:N or tcp://HOST:PORT")


def cluster_arg(text: str) -> ClusterSpec:
    """An argparse type: parse_spec, its error a usage error."""
    import argparse

    try:
        return parse_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def stderr_progress(prefix: str) -> Callable[[str], None]:
    """A progress log: one line on stderr per message, after prefix."""
    def log(msg: str) -> None:
        print(f"{prefix}: {msg}", file=sys.stderr, flush=True)
    return log


class Engine:
    """An open cluster: run calls of one function over it, results in call order."""

    def __init__(self, client: Any, log: Callable[[str], None]) -> None:
        self.client = client
        self.log = log

    def workers(self) -> list[str]:
        """Addresses of the workers there now."""
        return sorted(self.client.scheduler_info(n_workers=-1)["workers"])

    def share(self, value: Any) -> Any:
        """value held by the cluster (sent once to every worker); pass the result as a
        task argument instead of value."""
        return self.client.scatter(value, broadcast=True, hash=False)

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple], names: Sequence[str],
            done: Callable[[int, Any], str] | None = None) -> list[Any]:
        """fn(*call) for every call, spread over the workers; results in calls' order.
        Logs `[k/n] NAME: done(i, result)` as each completes.  Raises ClusterError when a
        call failed on every try (or every worker it ran on died)."""
        from distributed import as_completed

        futs = [self.client.submit(fn, *call, key=f"vkckpt-{i}-{os.urandom(6).hex()}",
                                   retries=RETRIES, pure=False)
                for i, call in enumerate(calls)]
        index = {f.key: i for i, f in enumerate(futs)}
        results: list[Any] = [None] * len(futs)
        for k, fut in enumerate(as_completed(futs), 1):
            i = index[fut.key]
            try:
                results[i] = fut.result()
            except Exception as exc:  # the task's own error, or KilledWorker
                for f in futs:
                    f.cancel()
                raise ClusterError(f"{names[i]}: failed on the cluster "
                                   f"({type(exc).__name__}: {exc})") from None
            self.log(f"[{k}/{len(futs)}] {names[i]}"
                     + (f": {done(i, results[i])}" if done else ""))
        return results


def serial_map(fn: Callable[..., Any], calls: Sequence[tuple], names: Sequence[str],
               log: Callable[[str], None],
               done: Callable[[int, Any], str] | None = None) -> list[Any]:
    """Engine.map's contract, in this process, one call after another."""
    results = []
    for i, call in enumerate(calls):
        results.append(fn(*call))
        log(f"[{i + 1}/{len(calls)}] {names[i]}" + (f": {done(i, results[i])}" if done else ""))
    return results


@contextmanager
def open_cluster(spec: ClusterSpec, log: Callable[[str], None],
                 timeout: float = CONNECT_TIMEOUT) -> Iterator[Engine]:
    """An Engine on spec's cluster: a local one started here (scheduler and workers on
    127.0.0.1, TCP, stopped on leaving), or the scheduler at spec.address; ClusterError
    when it does not answer within timeout seconds."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise ClusterError("--cluster needs Dask distributed: pip install "
                           "'vkckpt[cluster]'") from None
    import logging

    cluster = None
    try:
        if spec.address:
            client = Client(spec.address, timeout=timeout)
        else:
            dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                             # its 10 ms stack sampling takes the GIL from the vkernel
                             "distributed.worker.profile.enabled": False})
            cluster = LocalCluster(n_workers=spec.workers, threads_per_worker=1,
                                   processes=True, host="127.0.0.1", protocol="tcp",
                                   scheduler_port=0, dashboard_address=None,
                                   silence_logs=logging.ERROR, memory_limit=0)
            client = Client(cluster, timeout=timeout)
            client.wait_for_workers(spec.workers, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise ClusterError(f"cluster {spec!r}: cannot connect ({exc})") from None
    engine = Engine(client, log)
    log(f"cluster {client.scheduler.address}: {len(engine.workers())} worker(s)")
    try:
        yield engine
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
