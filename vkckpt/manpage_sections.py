"""Sections of vkckpt-abi(7) generated from the objects they describe: /proc (from
fs/procfs.py's tables) and the compatibility suite's known differences (from its cases)."""

from __future__ import annotations


def roff_escape(text: str) -> str:
    """Text made safe for a roff text line or macro argument (no control characters)."""
    out = text.replace("\\", "\\e").replace("-", "\\-").replace('"', "\\(dq")
    return "\\&" + out if out[:1] in (".", "'") else out



def proc_section() -> list[str]:
    """The /proc section: what is there (from fs/procfs.py's tables) and how it differs."""
    from vkckpt.fs import procfs, procsys

    def tree(d: dict, prefix: str) -> list[str]:
        out = []
        for name, v in sorted(d.items()):
            out += tree(v, f"{prefix}{name}/") if isinstance(v, dict) else [prefix + name]
        return out

    per_pid = sorted([*procfs.PID_FILES, *procfs.PID_LINKS, "fd/", "fdinfo/", "task/"])
    lines = [
        '.SH "/PROC"',
        "Paths under",
        ".I /proc",
        "never reach the host: the vkernel generates them from its own state, for its own",
        "processes only (vkernel pids), before the guest root is looked at.",
        "Each",
        ".IR /proc/ PID",
        "directory holds",
        ", ".join(roff_escape(n) for n in per_pid) + ";",
        ".IR /proc/ PID /task/ TID",
        "holds the same files for one thread.",
        ".I /proc/self",
        "and",
        ".I /proc/thread\\-self",
        "are symbolic links, as on Linux.",
        "The system files are",
        ", ".join(roff_escape(n) for n in sorted(procsys.SYSTEM_FILES)) + ",",
        "and",
        ", ".join(roff_escape(n) for n in tree(procsys.SYS_TREE, "sys/")) + ".",
        ".PP",
        "Values agree with what guests see elsewhere: pids and parents as",
        ".BR getpid (2)",
        "reports them, times on the virtual clock (clock ticks of 100 Hz; the machine booted",
        "at the vkernel epoch), the memory limit as RAM (as",
        ".BR sysinfo (2)),",
        ".BR uname (2)'s",
        "names, and the virtual CPU's CPUID facts in",
        ".IR cpuinfo .",
        "Differences from Linux, by design:",
        "a file is generated when it is opened, not at each read (a checkpoint saves the",
        "bytes and the offset, see",
        ".BR vkckpt\\-image (5));",
        "a directory is listed when a read starts at its beginning;",
        "writes are refused",
        ".RB ( EACCES",
        "on open for writing, even for",
        ".IR oom_score_adj );",
        "every accessible page counts as resident (VmRSS);",
        "a process's start time",
        "(field 22 of",
        ".IR stat )",
        "is 0; the load average is 0; there is no vDSO in",
        ".IR maps ;",
        "a task's name",
        ".RB ( comm )",
        "is per process, not per thread;",
        "a symbolic link of the guest root that points into",
        ".I /proc",
        "(such as",
        ".IR /etc/mtab )",
        "is resolved in the root, not in",
        ".IR /proc .",
    ]
    return lines


def known_section() -> list[str]:
    """KNOWN DIFFERENCES: the compatibility suite's cases marked known, each with its
    reason (vkckpt/testing/compat_cases.py); a reason that starts with "needs" is a gap."""
    from vkckpt.testing.compat_cases import CASES

    suites: dict[str, list] = {}
    for c in CASES:
        suites.setdefault(c.suite, []).append(c)
    known = [c for c in CASES if c.known]
    same = len(CASES) - len(known)
    lines = [
        '.SH "KNOWN DIFFERENCES"',
        "The compatibility suite",
        "(\\fIvkckpt/testing/compat.py\\fR, \\fBmake compat\\fR)",
        "runs software nobody here wrote, Debian's busybox\\-static applets, bash\\-static",
        "scripts, the static Go program gofmt, and the dynamic sqlite3, lua5.4 and python3",
        "under a read\\-only",
        ".BR /usr ,",
        "natively (chrooted) and under the vkernel, and freezes and thaws each run at",
        "several points (\\fBvkckpt regress\\fR runs them too, as its compat cases).",
        f"Of its {len(CASES)} cases {same} ({100.0 * same / len(CASES):.1f}%) give the",
        "host's output and exit status; by suite (cases, known differences):",
        ".PP",
        ".EX",
    ]
    lines += [f"{roff_escape(name):<12} {len(cs):>4} {sum(bool(c.known) for c in cs):>3}"
              for name, cs in suites.items()]
    lines += [".EE", ".PP",
              "The others differ, each by a design choice or a known gap (a missing piece,",
              "named):"]
    for c in known:
        kind = "Known gap" if c.known.startswith("needs ") else "Design choice"
        lines += [".TP", f".B {roff_escape(c.suite + '/' + c.name)}",
                  f"{kind}: {roff_escape(c.known)}."]
    return lines
