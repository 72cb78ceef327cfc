"""Target 7: hundreds of guest processes and a thousand threads run, freeze and thaw.

The spawner guest forks `nproc` processes of `nthreads` threads each; once all of them exist
the vkernel is frozen, the live run finishes, and the image is thawed in this process and
finished too: both must agree (output, exit status, ticks).  The memory footprint is read
from /proc/self/status while every engine is alive.
"""

from __future__ import annotations

import time

from bench.common import Console, Guests, Profile, Result, config, mb, memory_status
from vkckpt.ckpt.freeze import freeze
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.runner import boot


def run(p: Profile, g: Guests) -> Result:
    r = Result("scale", f"spawner: {p.nproc} processes x {p.nthreads} threads")
    before = memory_status()
    out = Console()
    k = boot(config(g, "spawner", [str(p.nproc), str(p.nthreads), "20"], out))
    t0 = time.perf_counter()
    status = k.run(on_schedule_point=lambda _k: out.lines >= 1)
    if status is not None:
        raise RuntimeError(f"spawner ended early: {out.text[-500:]}")
    r.add("start_s", time.perf_counter() - t0, "s")
    procs = sum(1 for q in k.procs.values() if not q.zombie)
    threads = sum(1 for t in k.threads.values() if t.alive)
    r.add("processes", procs, "")
    r.add("threads", threads, "")
    now = memory_status()
    r.add("rss_MB", mb(now.get("VmRSS", 0)), "MB")
    r.add("rss_per_process_MB", mb(now.get("VmRSS", 0) - before.get("VmRSS", 0)) / procs, "MB")
    r.add("vsize_GB", now.get("VmSize", 0) / 1e9, "GB")
    r.target("processes", ">=", p.nproc)
    r.target("threads", ">=", p.nproc * p.nthreads)

    image = g.path("scale.img")
    t0 = time.perf_counter()
    freeze(k, str(image))
    r.add("freeze_s", time.perf_counter() - t0, "s")
    r.add("image_MB", mb(image.stat().st_size), "MB")
    seen = len(out.text)
    t0 = time.perf_counter()
    st1 = k.run()
    r.add("finish_s", time.perf_counter() - t0, "s")
    ticks1 = k.sched.ticks
    k.shutdown()

    out2 = Console()
    t0 = time.perf_counter()
    k2 = thaw(str(image), ThawOptions(root=str(g.root), stdout=out2, stderr=out2,
                                      deliver_sigthaw=False))
    r.add("thaw_s", time.perf_counter() - t0, "s")
    st2 = k2.run()
    same = (st1, ticks1, out.text[seen:]) == (st2, k2.sched.ticks, out2.text) and st1 == 0
    k2.shutdown()
    r.add("identical_after_thaw", float(same), "bool")
    r.target("identical_after_thaw", ">=", 1)
    r.add("peak_rss_MB", mb(memory_status().get("VmHWM", 0)), "MB")
    image.unlink()
    return r
