"""/proc under the vkernel, as Debian's busybox-static and bash-static read it (ps, pidof,
free, uptime, df, mount, cat /proc/...), checked against what the vkernel knows (pids,
the memory limit, the virtual clock), and an open /proc file across a freeze."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from vkckpt.ckpt.snapshot import write_image
from vkckpt.runner import boot
from vkckpt.testing.compat import check_frozen, config, make_root, run_vkernel
from vkckpt.testing.compat_cases import Case
from vkckpt.testing.hostile_images import load_records
from vkckpt.vmspace.account import DEFAULT_LIMIT


def sh(script: str, shell: str = "/bin/sh") -> Case:
    return Case("procfs", "t", (shell, "-c", script))


@pytest.fixture
def run(tmp_path: Path):
    """Run a script under the vkernel in a fresh busybox root: (stdout text, status)."""
    def go(script: str, shell: str = "/bin/sh") -> tuple[str, int]:
        root = make_root(tmp_path)
        try:
            out, status, err, _, _ = run_vkernel(sh(script, shell), root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        assert b"unimplemented" not in err or b"sendfile" in err, err.decode()
        return out.decode(), status
    return go


def test_ps_lists_every_vkernel_process_with_its_command_line(run) -> None:
    out, status = run("sleep 5 & ps; kill $!")
    assert status == 0
    lines = out.splitlines()
    assert re.match(r"PID\s+USER\s+COMMAND$", lines[0])
    rows = {int(line.split()[0]): line.split(None, 2)[2] for line in lines[1:]}
    assert rows[1].endswith("/bin/sh -c sleep 5 & ps; kill $!")
    assert "sleep 5" in rows.values()
    assert all(line.split()[1] == "root" for line in lines[1:])
    assert sorted(rows) == list(rows)  # ps walks /proc in pid order
    assert len(rows) == 3  # the shell, sleep, and ps (a forked shell that runs the applet)


def test_pidof_finds_the_pid_the_shell_started(run) -> None:
    out, status = run("sleep 5 & echo started $!; pidof sleep; kill $!")
    assert status == 0
    started, found = out.splitlines()
    assert started == f"started {found}" and int(found) > 1


def test_free_reports_the_memory_limit(run) -> None:
    out, _ = run("free")
    mem = next(line.split() for line in out.splitlines() if line.startswith("Mem:"))
    assert int(mem[1]) == DEFAULT_LIMIT // 1024
    assert int(mem[1]) == int(mem[2]) + int(mem[3]) and int(mem[2]) > 0


def test_meminfo_agrees_with_free(run) -> None:
    out, _ = run("head -3 /proc/meminfo")
    total, free, avail = (int(line.split()[1]) for line in out.splitlines())
    assert total == DEFAULT_LIMIT // 1024 and 0 < free == avail < total


def test_uptime_is_virtual_and_unloaded(run) -> None:
    out, _ = run("uptime; cat /proc/uptime /proc/loadavg")
    up, times, load = out.splitlines()
    assert up == " 00:00:00 up 0 min,  0 users,  load average: 0.00, 0.00, 0.00"
    assert re.fullmatch(r"0\.\d\d 0\.\d\d", times)
    assert re.fullmatch(r"0\.00 0\.00 0\.00 1/1 \d+", load)  # cat itself runs, the shell waits


def test_df_and_mount_read_proc_mounts(run) -> None:
    out, status = run("mount; df /")
    assert status == 0
    lines = out.splitlines()
    assert lines[:2] == ["/dev/root on / type ext4 (rw,relatime)",
                         "proc on /proc type proc (rw,nosuid,nodev,noexec,relatime)"]
    assert lines[2].split()[:2] == ["Filesystem", "1K-blocks"]
    assert lines[3].split()[0] == "/dev/root" and lines[3].split()[-1] == "/"


def test_cat_proc_self_status_describes_cat(run) -> None:
    out, _ = run("cat /proc/self/status; echo shell=$$")
    fields = dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)
    assert fields["Name"] == "cat" and fields["State"] == "R (running)"
    assert fields["Tgid"] == fields["Pid"] != "1" and fields["PPid"] == "1"
    assert fields["Threads"] == "1" and fields["Uid"] == "0\t0\t0\t0"
    assert int(fields["VmSize"].split()[0]) >= int(fields["VmRSS"].split()[0]) > 0
    assert fields["SigBlk"] == "0" * 16 and len(fields["SigCgt"]) == 16
    assert out.splitlines()[-1] == "shell=1"


def test_proc_self_stat_has_52_fields_and_the_shell_as_parent(run) -> None:
    out, _ = run("cat /proc/self/stat; true")  # not the last command: the shell forks
    f = out.split()
    assert len(f) == 52 and f[1] == "(cat)" and f[2] == "R" and f[3] == "1"
    assert f[19] == "1" and int(f[22]) > 0  # num_threads, vsize


def test_maps_names_the_program_heap_and_stack(run) -> None:
    out, _ = run("cat /proc/self/maps")
    names = [line[73:] for line in out.splitlines() if len(line) > 73]
    assert "/bin/busybox" in names and "[heap]" in names and names[-1] == "[stack]"
    assert all(re.match(r"[0-9a-f]{8,}-[0-9a-f]{8,} [r-][w-][x-]p [0-9a-f]{8} "
                        r"\d\d:\d\d \d+ ", line) for line in out.splitlines())


def test_fd_listing_and_links(run) -> None:
    out, _ = run("ls /proc/self/fd; exec 3</etc/passwd; readlink /proc/$$/fd/3; "
                 "cat /proc/$$/fdinfo/3")
    lines = out.splitlines()
    assert lines[:5] == ["0", "1", "2", "3", "/etc/passwd"]  # ls's own directory is 3
    assert lines[5:7] == ["pos:\t0", "flags:\t0100000"] and lines[7].startswith("mnt_id:\t")


def test_proc_root_lists_pids_and_system_files(run) -> None:
    out, _ = run("ls /proc; ls /proc/sys/kernel; cat /proc/sys/kernel/osrelease; uname -r")
    names = out.split()
    for n in ("1", "2", "self", "thread-self", "cpuinfo", "meminfo", "mounts", "stat",
              "uptime", "version", "osrelease", "pid_max", "random"):
        assert n in names
    assert out.splitlines()[-2] == out.splitlines()[-1] == "6.1.0-vkckpt"


def test_cpuinfo_is_the_virtual_cpu(run) -> None:
    out, _ = run("grep -E '^(processor|model name|flags)' /proc/cpuinfo")
    rows = dict(line.split("\t: ", 1) for line in out.replace("\t\t", "\t").splitlines())
    assert rows["processor"] == "0" and rows["model name"] == "vkckpt virtual CPU @ 3.00GHz"
    assert "sse4_2" in rows["flags"].split() and "avx" not in rows["flags"].split()


def test_bash_process_substitution_goes_through_dev_fd(run) -> None:
    out, _ = run("diff <(echo a) <(echo a); echo same=$?; diff <(echo a) <(echo b) | "
                 "head -2; cat <(echo via) /dev/stdin < <(echo stdin)", shell="/bin/bash")
    assert out.splitlines() == ["same=0", "--- /dev/fd/63", "+++ /dev/fd/62", "via", "stdin"]


def test_writes_to_proc_are_refused(run) -> None:
    out, _ = run("echo 1 > /proc/self/status; echo rc=$?; echo 1 > /proc/sys/vm/"
                 "overcommit_memory; echo rc=$?; cat /proc/sys/vm/overcommit_memory")
    assert out.splitlines() == ["rc=1", "rc=1", "0"]


def test_an_open_proc_file_thaws_with_its_snapshot(tmp_path: Path) -> None:
    """The shell holds /proc/self/status open (fd 3) across a freeze; after the thaw the
    rest it reads is the rest of the status of the process before the freeze."""
    case = sh("exec 3</proc/self/status; read -r first <&3; echo $first; "
              "i=0; while [ $i -lt 300 ]; do i=$((i+1)); done; cat <&3 | grep -c .; "
              "ls /proc/self/fd")
    root = make_root(tmp_path)
    try:
        out, status, err, points, ticks = run_vkernel(case, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines = out.decode().splitlines()
    # the first process's name is the base name of the path it was started by, /bin/sh
    assert lines[0] == "Name: sh" and int(lines[1]) > 40, err.decode()
    inside = [p for p in points if 0 < p < ticks]
    assert len(inside) >= 3
    chosen = (inside[len(inside) // 3], inside[2 * len(inside) // 3])
    for at in chosen:
        assert check_frozen(case, tmp_path, at, (out, status, ticks)) == ""
    saved = _proc_files_saved(case, tmp_path, chosen[0])
    assert [f["path"] for f in saved] == ["/proc/1/status"]  # as readlink shows it
    assert 0 < saved[0]["offset"] < len(saved[0]["data"])
    assert saved[0]["data"].startswith(b"Name:\tsh\n")


def _proc_files_saved(case: Case, base: Path, at: int) -> list[dict]:
    """The proc file records of an image of case frozen at tick `at`."""
    root = make_root(base)
    try:
        k = boot(config(case, root, [], []))
        assert k.run(until_ticks=at) is None
        write_image(k, str(root / "x.img"))
        k.shutdown()
        return [r[3] for r in load_records(root / "x.img")
                if r[0] == "file" and r[3]["kind"] == "proc"]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_paths_that_name_nothing_fail_as_on_linux(run) -> None:
    out, _ = run("cat /proc/self/status/x 2>&1; cat /proc/424242/status 2>&1; "
                 "cat /proc/self/nosuch 2>&1; head -1 /proc/self/../self/status; "
                 "cd /proc/self/root && ls -d etc; readlink /proc/self/cwd; "
                 "readlink /proc/self/fd/0")
    assert out.splitlines() == [
        "cat: can't open '/proc/self/status/x': Not a directory",
        "cat: can't open '/proc/424242/status': No such file or directory",
        "cat: can't open '/proc/self/nosuch': No such file or directory",
        "Name:\thead", "etc", "/", "pipe:[4294967296]"]

