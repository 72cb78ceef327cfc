"""Run one command entry point many times, each in a forked child of a prepared interpreter.

Fast (no interpreter start-up per command), bounded by a time limit, and measured: each run
reports its exit status, output, seconds and peak RSS above the parent's.  The entry point
is passed in (for the image corpus: `vkckpt.cli.main`, bound by the caller, which sits above
the command line in the layers).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

#: A command's main: argv -> exit status.
Entry = Callable[[list[str]], int]


def run_jobs(jobs: list[dict], entry: Entry, timeout: float = 60.0) -> list[dict]:
    """Run entry(job["argv"]) for each job in a forked child of this process; return per job
    its exit status (None after a kill at the time limit), stdout/stderr, seconds and peak
    RSS above this process's (KiB)."""
    results = []
    for job in jobs:
        outp, errp = Path(job["stdout"]), Path(job["stderr"])
        base = _rss_kib()
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: one `vkckpt` command, then _exit
            code = 125
            try:
                fd0 = os.open(os.devnull, os.O_RDONLY)
                fd1 = os.open(outp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                fd2 = os.open(errp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                for src, dst in ((fd0, 0), (fd1, 1), (fd2, 2)):
                    os.dup2(src, dst)
                os.chdir(job.get("cwd", "/"))
                code = entry(job["argv"])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                import traceback
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        status = rusage = None
        while time.monotonic() - t0 < timeout:
            got, st, ru = os.wait4(pid, os.WNOHANG)
            if got:
                status, rusage = st, ru
                break
            time.sleep(0.005)
        if status is None:
            os.kill(pid, 9)
            _, status, rusage = os.wait4(pid, 0)
            code = None
        else:
            code = os.waitstatus_to_exitcode(status)
        results.append({"argv": job["argv"], "code": code,
                        "seconds": time.monotonic() - t0,
                        "rss_kib": rusage.ru_maxrss - base,
                        "stdout": outp.read_bytes().decode(errors="replace"),
                        "stderr": errp.read_bytes().decode(errors="replace")})
    return results


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def serve(argv: list[str], entry: Entry) -> int:
    """Run the jobs of file argv[0] (JSON: jobs, timeout) through entry; results to argv[1]."""
    jobs = json.loads(Path(argv[0]).read_text())
    Path(argv[1]).write_text(json.dumps(run_jobs(jobs["jobs"], entry,
                                                 jobs.get("timeout", 60.0))))
    return 0
