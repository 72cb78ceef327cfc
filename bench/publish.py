"""Published ports (`--publish`): request/reply round trips from a host client through a
published port to the pubserver guest, and the host CPU an idle published server burns,
side by side with the same pubserver binary run natively on the host's loopback.

Idle CPU is the server process's user+system time over IDLE_S seconds with one client
connected and silent: an idle vkernel sleeps in select(2) on its host sockets, so it
should be as near zero as the native server's."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time

from bench.common import Guests, Profile, Result

ROUNDS = {"full": 5000, "quick": 500}  # 16-byte request, 16-byte uppercased reply
IDLE_S = {"full": 2.0, "quick": 1.0}
GUEST_PORT = 8080
MSG = b"0123456789abcdef"


def run(p: Profile, g: Guests) -> Result:
    r = Result("publish", "published port: round trips and idle CPU, vkckpt vs native")
    g.add("pubserver")
    prog = str(g.root / "pubserver")
    rates: dict[str, list[float]] = {"vkckpt": [], "native": []}
    idle: dict[str, list[float]] = {"vkckpt": [], "native": []}
    for _ in range(p.repeat):
        for side in rates:
            port = _free_port()
            if side == "vkckpt":
                cmd = [sys.executable, "-m", "vkckpt", "run", "--root", str(g.root),
                       "--publish", f"{port}:{GUEST_PORT}", "/pubserver", str(GUEST_PORT), "1"]
            else:
                cmd = [prog, str(port), "1"]
            rate, cpu = _measure(cmd, port, ROUNDS[p.name], IDLE_S[p.name])
            rates[side].append(rate)
            idle[side].append(cpu)
    for side in rates:
        r.add(f"rtt_{side}_rate", statistics.median(rates[side]), "round trips/s")
        r.add(f"idle_{side}_cpu", 100 * statistics.median(idle[side]), "% of a core")
    r.add("rtt_native_over_vkckpt",
          r.metrics["rtt_native_rate"] / r.metrics["rtt_vkckpt_rate"], "x")
    r.target("idle_vkckpt_cpu", "<=", 5.0)
    r.notes.append(f"{ROUNDS[p.name]} x 16-byte request and reply on one connection; idle: "
                   f"{IDLE_S[p.name]:g} s with the client connected and silent; medians of "
                   f"{p.repeat}")
    return r


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _measure(cmd: list[str], port: int, rounds: int, idle_s: float) -> tuple[float, float]:
    """(round trips per second, CPU seconds per second while idle) of one server run."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline()
        if not line.startswith(b"listening"):
            raise RuntimeError(f"{cmd[0]}: server did not start ({line!r})")
        with _connect(port) as c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _round_trip(c)  # the connection is accepted and served
            t0 = time.perf_counter()
            for _ in range(rounds):
                _round_trip(c)
            rate = rounds / (time.perf_counter() - t0)
            before = _cpu(proc.pid)
            time.sleep(idle_s)
            cpu = (_cpu(proc.pid) - before) / idle_s
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rate, cpu


def _round_trip(c: socket.socket) -> None:
    c.sendall(MSG)
    got = b""
    while len(got) < len(MSG):
        chunk = c.recv(len(MSG) - len(got))
        if not chunk:
            raise RuntimeError("server closed the connection")
        got += chunk
    if got != MSG.upper():
        raise RuntimeError(f"bad reply {got!r}")


def _connect(port: int) -> socket.socket:
    end = time.monotonic() + 60
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except ConnectionRefusedError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def _cpu(pid: int) -> float:
    """CPU seconds the threads of process pid have run so far (/proc/PID/task/*/schedstat,
    in nanoseconds: clock-tick counts are too coarse for an idle second)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return total / 1e9
