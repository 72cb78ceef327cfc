"""Fan-out thaws per second: one image thawed N times serially in this process, and on a
local Dask cluster of 1 and 2 worker processes (loopback TCP), side by side in one run.

The image is `compute 1` frozen early, so a run is a thaw plus some guest work; each rate is
N runs over the seconds from submitting the first to receiving the last (the cluster's
start-up, sending the payload and one warm-up thaw per worker are left out: they are paid
once per command, ~1 s here; the serial runs come after one untimed run likewise).
Every cluster row must equal the serial row of the same run (the oracle), or the benchmark
fails.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict

from bench.common import Guests, Profile, Result, cpu_count
from vkckpt import fanout
from vkckpt.cluster import open_cluster, parse_spec


def _image(g: Guests) -> str:
    """compute 1, frozen at its first scheduling point after 20000 blocks."""
    prog = g.add("compute")
    img = g.path("fanout.img")
    p = subprocess.run([sys.executable, "-m", "vkckpt", "run", "--root", str(g.root),
                        "--quantum", "997", "--freeze-at", "20000", "--no-control",
                        "-o", str(img), prog, "1"], capture_output=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"cannot freeze compute: {p.stderr.decode()[-500:]}")
    return str(img)


def run(p: Profile, g: Guests) -> Result:
    runs = 8 if p.name == "quick" else 32
    payload = fanout.pack(_image(g), str(g.root))
    vs = fanout.variants(runs, [["seed"]])
    r = Result("fanout", f"fan-out thaws of compute 1 ({runs} runs, varied seeds): serial in "
               "this process vs a local Dask cluster of 1 and 2 workers")
    fanout.run_one(payload, vs[0], (), None)  # this process's set-up, as the workers'
    t0 = time.perf_counter()
    serial = [asdict(fanout.run_one(payload, v, (), None)) for v in vs]
    rate0 = r.add("serial_thaws_per_s", runs / (time.perf_counter() - t0), "thaws/s")
    for n in (1, 2):
        with open_cluster(parse_spec(f"local:{n}"), lambda s: None) as engine:
            shared = engine.share(payload)
            warm = [engine.client.submit(fanout.run_one, shared, vs[0], (), None,
                                         workers=[w], pure=False) for w in engine.workers()]
            engine.client.gather(warm)  # imports and engine set-up paid before timing
            t0 = time.perf_counter()
            rows = engine.map(fanout.run_one, [(shared, v, (), None) for v in vs],
                              [f"run {v.run}" for v in vs])
            rate = r.add(f"workers{n}_thaws_per_s", runs / (time.perf_counter() - t0),
                         "thaws/s")
        if [asdict(x) for x in rows] != serial:
            raise RuntimeError(f"fan-out on {n} worker(s) differs from the serial runs")
        r.add(f"workers{n}_ratio", rate / rate0, "x serial")
    r.add("scaling_2_over_1", r.metrics["workers2_thaws_per_s"]
          / r.metrics["workers1_thaws_per_s"], "x")
    r.notes.append(f"every cluster row equals the serial row of the same run; {cpu_count()} "
                   "host CPU(s), shared with whatever else runs")
    return r
