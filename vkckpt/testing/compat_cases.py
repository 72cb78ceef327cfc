"""The compatibility suite's cases (testing/compat.py runs them): data, one line each.
Here the static programs' (busybox applets, busybox sh, bash); the dynamic programs' are in
testing/compat_dynamic.py, and CASES holds them all.

Inputs are the files testing/compat_inputs.py writes in /work (words, nums, table, csv,
prose, tree/, bin.dat, lua/).  Every case prints what is the same on any Linux host for the
same root: no times, pids or host facts, unless the case is about them and says `known`.
"""

from __future__ import annotations

from vkckpt.testing.compat_case import Case
from vkckpt.testing.compat_dynamic import LUA, PYTHON, SQLITE

__all__ = ["CASES", "Case"]


def _bb(name: str, *args: str, stdin: bytes = b"", known: str = "") -> Case:
    return Case("busybox", name, ("/bin/busybox", *args), stdin, known)


def _sh(name: str, script: str, stdin: bytes = b"", known: str = "") -> Case:
    return Case("busybox-sh", name, ("/bin/sh", "-c", script), stdin, known)


def _bash(name: str, script: str, stdin: bytes = b"", known: str = "") -> Case:
    return Case("bash", name, ("/bin/bash", "-c", script), stdin, known)


BUSYBOX = [
    _bb("echo", "echo", "hello", "world"),
    _bb("echo-e", "echo", "-e", "a\\tb\\nc"),
    _bb("printf", "printf", "%05d|%-6s|%x|%.3f\\n", "42", "ab", "255", "3.14159"),
    _bb("cat", "cat", "words", "csv"),
    _bb("cat-n", "cat", "-n", "prose"),
    _bb("tac", "tac", "words"),
    _bb("head", "head", "-n", "3", "words"),
    _bb("head-c", "head", "-c", "10", "prose"),
    _bb("tail", "tail", "-n", "4", "nums"),
    _bb("tail-plus", "tail", "-n", "+38", "nums"),
    _bb("wc", "wc", "words", "prose", "nums"),
    _bb("wc-l", "wc", "-l", "words"),
    _bb("sort", "sort", "words"),
    _bb("sort-n", "sort", "-n", "nums"),
    _bb("sort-rn", "sort", "-rn", "nums"),
    _bb("sort-u", "sort", "-u", "words"),
    _bb("sort-f", "sort", "-f", "words"),
    _bb("sort-k", "sort", "-t", "\t", "-k3,3n", "table"),
    _bb("sort-stdin", "sort", "-r", stdin=b"b\nc\na\n"),
    _bb("uniq", "uniq", stdin=b"a\na\nb\nb\nb\nc\na\n"),
    _bb("uniq-c", "uniq", "-c", stdin=b"a\na\nb\nc\nc\n"),
    _bb("cut-d", "cut", "-d", ",", "-f", "2,3", "csv"),
    _bb("cut-c", "cut", "-c", "1-5", "prose"),
    _bb("tr", "tr", "a-z", "A-Z", stdin=b"hello, world\n"),
    _bb("tr-d", "tr", "-d", "aeiou", stdin=b"education is key\n"),
    _bb("tr-s", "tr", "-s", " ", stdin=b"a    b   c\n"),
    _bb("sed-s", "sed", "s/o/0/g", "prose"),
    _bb("sed-n", "sed", "-n", "2,3p", "words"),
    _bb("sed-e", "sed", "-e", "1d", "-e", "s/^/> /", "csv"),
    _bb("sed-y", "sed", "y/abc/xyz/", stdin=b"aabbcc\n"),
    _bb("awk-field", "awk", "-F,", "NR>1 {print $2, $3*2}", "csv"),
    _bb("awk-sum", "awk", "{s+=$1} END {print s, NR}", "nums"),
    _bb("awk-printf", "awk", 'BEGIN {for (i=1;i<=5;i++) printf "%d^2=%d\\n", i, i*i}'),
    _bb("awk-assoc", "awk", "{c[$1]++} END {n=0; for (k in c) n++; print n}", "words"),
    _bb("grep", "grep", "an", "words"),
    _bb("grep-c", "grep", "-c", "e", "words"),
    _bb("grep-v", "grep", "-v", "a", "words"),
    _bb("grep-i", "grep", "-i", "apple", "words"),
    _bb("grep-E", "grep", "-E", "^(fig|kiwi)$", "words"),
    _bb("grep-n", "grep", "-n", "quick", "prose"),
    _bb("grep-r", "grep", "-r", "2", "tree"),
    _bb("grep-none", "grep", "zzz", "words"),
    _bb("rev", "rev", "words"),
    _bb("nl", "nl", "prose"),
    _bb("fold", "fold", "-w", "20", "prose"),
    _bb("expand", "expand", "table"),
    _bb("od", "od", "-c", "csv"),
    _bb("od-x", "od", "-A", "x", "-t", "x1", "-N", "32", "bin.dat"),
    _bb("hexdump", "hexdump", "-C", "csv"),
    _bb("xxd", "xxd", "-l", "48", "bin.dat"),
    _bb("md5sum", "md5sum", "words", "bin.dat"),
    _bb("sha1sum", "sha1sum", "prose"),
    _bb("sha256sum", "sha256sum", "words", "nums"),
    _bb("sha512sum", "sha512sum", "csv"),
    _bb("crc32", "crc32", "prose"),
    _bb("sha3sum", "sha3sum", "prose"),
    _bb("base64", "base64", "csv"),
    _bb("base64-d", "base64", "-d", stdin=b"aGVsbG8gYmFzZTY0Cg==\n"),
    _bb("dirname", "dirname", "/a/b/c.txt"),
    _bb("basename", "basename", "/a/b/c.txt", ".txt"),
    _bb("realpath", "realpath", "tree/a/../three"),
    _bb("ls", "ls", "tree"),
    _bb("ls-1R", "ls", "-1R", "tree"),
    _bb("ls-a", "ls", "-a", "tree/a"),
    _bb("find-name", "find", ".", "-name", "t*",
        known="directory order: the vkernel lists entries sorted, the host in its "
        "filesystem's order (a host fact)"),
    _bb("find-sorted", "sh", "-c", "find . -name 't*' | sort"),
    _bb("find-type", "sh", "-c", "find tree -type f | sort"),
    _bb("find-size", "find", "tree", "-type", "f", "-size", "-2c"),
    _bb("stat-c", "stat", "-c", "%n %s %F %a", "words", "tree"),
    _bb("du", "sh", "-c", "du -a tree | sort -k2"),
    _bb("seq", "seq", "1", "3", "20"),
    _bb("seq-s", "seq", "-s", ",", "5"),
    _bb("expr", "expr", "7", "*", "6"),
    _bb("expr-match", "expr", "abcdef", ":", "abc\\(.*\\)"),
    _bb("test-true", "test", "-d", "tree"),
    _bb("test-false", "test", "-f", "nope"),
    _bb("true", "true"),
    _bb("false", "false"),
    _bb("env", "env"),
    _bb("env-u", "env", "-u", "HOME", "sh", "-c", "echo ${HOME-unset} $PATH"),
    _bb("id", "id", known="supplementary groups: the vkernel's root is in group 0 "
        "(getgroups), a host process may have none"),
    _bb("whoami", "whoami"),
    _bb("date-epoch", "date", "-u", "-d", "@86400", "+%Y-%m-%d %H:%M:%S %a"),
    _bb("date-parse", "date", "-u", "-d", "2020-02-29 12:34:56", "+%s %j"),
    _bb("cal", "cal", "2", "2024"),
    _bb("factor", "factor", "360", "97", "1001"),
    _bb("dc", "dc", "-e", "2 10 ^ p 17 3 / p"),
    _bb("bc", "bc", stdin=b"scale=4; 22/7\n2^20\n"),
    _bb("tee", "tee", "/tmp/copy", stdin=b"tee'd line\n"),
    _bb("paste", "paste", "words", "nums"),
    _bb("paste-s", "paste", "-s", "-d", ":", "words"),
    _bb("cmp-same", "cmp", "words", "words"),
    _bb("cmp-diff", "cmp", "words", "nums"),
    _bb("diff", "diff", "words", "nums"),
    _bb("strings", "strings", "-n", "6", "prose"),
    _bb("uname-m", "uname", "-m"),
    _bb("uname-s", "uname", "-s"),
    _bb("which", "which", "busybox"),
    _bb("yes-head", "sh", "-c", "yes abc | head -n 3"),
    _bb("unix2dos", "unix2dos", stdin=b"a\nb\n"),
    _bb("dos2unix", "dos2unix", stdin=b"a\r\nb\r\n"),
    _bb("hexdump-x", "hexdump", "-x", "nums"),
    _bb("sleep", "sleep", "0.05"),
    _bb("usleep", "usleep", "1000"),
    _bb("setsid", "setsid", "echo", "own session",
        known="the first process is the vkernel's init: when it exits the others are killed "
        "(the PID-namespace rule); natively the orphan prints on"),
    _bb("setsid-w", "setsid", "-w", "echo", "own session"),
    _bb("timeout", "timeout", "5", "echo", "in time"),
    _bb("xargs", "xargs", "-n", "2", "echo", stdin=b"1 2 3 4 5\n"),
    _bb("xargs-P", "xargs", "-P", "4", "-n", "1", "true", stdin=b"1 2 3 4 5 6 7 8\n"),
    _bb("tsort", "tsort", stdin=b"a b\nb c\nc d\n"),
    _bb("shuf-n0", "shuf", "-n", "0", "words"),
    _bb("split", "sh", "-c", "split -l 5 words /tmp/p. && ls /tmp && cat /tmp/p.ab"),
    _bb("gzip", "sh", "-c", "gzip -c prose | gunzip -c | md5sum"),
    _bb("bzip2", "sh", "-c", "bzip2 -c prose | bunzip2 -c | wc -c"),
    _bb("xz", "sh", "-c", "xz -dc < /dev/null; echo rc=$?"),
    _bb("tar", "sh", "-c", "tar cf /tmp/t.tar tree && tar tf /tmp/t.tar | sort"),
    _bb("tar-x", "sh", "-c", "tar cf - tree | (cd /tmp && tar xf -) && cat /tmp/tree/a/b/two"),
    _bb("cpio", "sh", "-c", "find tree | sort | cpio -o -H newc 2>/dev/null | wc -c"),
    _bb("mkdir-p", "sh", "-c", "mkdir -p /tmp/x/y/z && find /tmp/x | sort"),
    _bb("cp-r", "sh", "-c", "cp -r tree /tmp/t2 && find /tmp/t2 -type f | sort"),
    _bb("mv", "sh", "-c", "cp words /tmp/w && mv /tmp/w /tmp/w2 && ls /tmp"),
    _bb("rm-r", "sh", "-c", "cp -r tree /tmp/t3 && rm -r /tmp/t3 && ls /tmp | wc -l"),
    _bb("ln-s", "sh", "-c", "ln -s ../work/words /tmp/l && readlink /tmp/l && cat /tmp/l | wc -l"),
    _bb("ln", "sh", "-c", "ln words /tmp/h && stat -c %h /tmp/h"),
    _bb("chmod", "sh", "-c", "cp words /tmp/m && chmod 751 /tmp/m && stat -c %a /tmp/m"),
    _bb("truncate", "sh", "-c", "cp words /tmp/t && truncate -s 7 /tmp/t && cat /tmp/t"),
    _bb("dd", "sh", "-c", "dd if=bin.dat bs=100 count=3 2>/dev/null | md5sum"),
    _bb("sed-i", "sh", "-c", "cp words /tmp/s && sed -i s/apple/APPLE/ /tmp/s && "
        "cat /tmp/s && stat -c %a /tmp/s"),
    _bb("touch", "sh", "-c", "touch /tmp/new && ls /tmp && stat -c %s /tmp/new"),
    _bb("chown", "sh", "-c", "cp words /tmp/o && chown 12:34 /tmp/o && stat -c %u:%g /tmp/o"),
    _bb("mkfifo", "sh", "-c", "mkfifo /tmp/f && stat -c %F /tmp/f && "
        "(echo through > /tmp/f &) && cat /tmp/f"),
    _bb("mktemp", "sh", "-c", "f=$(mktemp /tmp/x.XXXXXX) && test -f $f && echo made"),
    _bb("readlink-f", "readlink", "-f", "tree/a/b/../one"),
]

BUSYBOX_SH = [
    _sh("loop", "i=0; while [ $i -lt 5 ]; do echo $i; i=$((i+1)); done"),
    _sh("case", 'for x in a1 b2 c3; do case $x in a*) echo A;; b*) echo B;; *) echo O;; '
        'esac; done'),
    _sh("func", "f() { echo \"f:$1:$#\"; return 3; }; f x y; echo rc=$?"),
    _sh("subshell", "(cd tree && ls); pwd"),
    _sh("cmdsub", 'n=$(wc -l < words); echo "lines=$n"'),
    _sh("pipeline", "cat words | sort | uniq -c | sort -rn | head -n 3"),
    _sh("redirect", "echo one > /tmp/o; echo two >> /tmp/o; cat < /tmp/o; wc -l /tmp/o"),
    _sh("heredoc", "cat <<EOF\nline $((6*7))\nEOF"),
    _sh("exit-status", "false; echo $?; (exit 7); echo $?"),
    _sh("trap-exit", "trap 'echo bye' EXIT; echo hi"),
    _sh("trap-signal", "trap 'echo got usr1' USR1; kill -USR1 $$; echo after"),
    _sh("background", "sleep 0.05 & wait $!; echo waited $?"),
    _sh("read", "while read a b; do echo \"[$b|$a]\"; done", stdin=b"1 x\n2 y\n"),
    _sh("set-e", "set -e; true; echo ok; false; echo not reached"),
    _sh("arith", "echo $(( (3+4)*5 % 6 )) $(( 1<<10 ))"),
    _sh("params", 'set -- a "b c" d; echo $#; for p in "$@"; do echo "<$p>"; done'),
    _sh("string-ops", 'v=hello.tar.gz; echo ${v%%.*} ${v#*.} ${#v}'),
    _sh("kill-child", "sleep 10 & kill $!; wait $!; echo status=$?"),
    _sh("exec-redir", "exec 3>/tmp/fd3; echo via3 >&3; exec 3>&-; cat /tmp/fd3"),
    _sh("stdin-cat", "cat", stdin=b"from stdin\n"),
    _sh("proc-status", "sed -n 's/^State:\t//p; s/^Name:\t//p; s/^Threads:\t//p' "
        "/proc/self/status"),
    _sh("proc-stat", "wc -w < /proc/self/stat; cut -d' ' -f2,3 /proc/self/stat"),
    _sh("proc-links", "[ -L /proc/self ] && [ -d /proc/self/fd ] && [ -r /proc/self/maps ] "
        "&& echo ok; readlink /proc/self/cwd"),
    _sh("proc-cmdline", "tr '\\0' ' ' < /proc/self/cmdline; echo"),
    _sh("proc-ostype", "cat /proc/sys/kernel/ostype; grep -c . /proc/self/limits"),
    _sh("dev-stdin", "[ -e /dev/stdin ] && cat /dev/stdin", stdin=b"via /dev/stdin\n"),
]

BASH = [
    _bash("procsub", "diff <(printf 'a\\nb\\n') <(printf 'a\\nc\\n'); echo rc=$?"),
    _bash("procsub-read", "while read l; do echo got $l; done < <(seq 3)"),
    _bash("arrays", 'a=(x y z); a+=(w); echo ${#a[@]} ${a[2]} "${a[@]:1:2}"'),
    _bash("assoc", 'declare -A m=([k1]=v1 [k2]=v2); for k in $(printf "%s\\n" "${!m[@]}" '
          '| sort); do echo $k=${m[$k]}; done'),
    _bash("regex", '[[ abc123 =~ ^([a-z]+)([0-9]+)$ ]] && echo ${BASH_REMATCH[2]}'),
    _bash("herestring", "read -r a b <<< 'one two'; echo $b $a"),
    _bash("mapfile", "mapfile -t L < words; echo ${#L[@]} ${L[3]}"),
    _bash("pipestatus", "true | false | true; echo ${PIPESTATUS[@]}"),
    _bash("printf-v", 'printf -v x "%03d" 7; echo $x'),
    _bash("brace", "echo {a,b}{1..3}"),
    _bash("trap-exit", "trap 'echo cleanup' EXIT; echo work"),
    _bash("trap-err", "trap 'echo err at $LINENO' ERR; false; echo on"),
    _bash("trap-usr1", "trap 'echo caught' USR1; kill -USR1 $$; echo done"),
    _bash("jobs", "sleep 0.05 & sleep 0.02 & wait; echo all done"),
    _bash("wait-n", "(exit 3) & wait -n; echo $?"),
    _bash("coproc", "coproc cat; echo ping >&${COPROC[1]}; read -r l <&${COPROC[0]}; "
          "echo $l; exec {COPROC[1]}>&-; wait"),
    _bash("func-rec", "fact() { (( $1 <= 1 )) && echo 1 && return; "
          "echo $(( $1 * $(fact $(( $1 - 1 ))) )); }; fact 10"),
    _bash("subst", 'v="The Cat sat"; echo ${v//at/og} ${v^^} ${v,,}'),
    _bash("file-read", 'c=$(< csv); echo "${c##*$\'\\n\'}"'),
    _bash("group-redir", "{ echo out; echo err >&2; } 2>&1 | wc -l"),
    _bash("arith-loop", "s=0; for ((i=0;i<1000;i++)); do ((s+=i)); done; echo $s"),
    _bash("local", "f() { local x=inner; echo $x; }; x=outer; f; echo $x"),
    _bash("getopts", 'set -- -a -b val rest; while getopts ab: o; do echo "$o=$OPTARG"; done'),
    _bash("exit-code", "bash -c 'exit 42'; echo $?"),
    _bash("dev-stdin", "cat /dev/stdin", stdin=b"via /dev/stdin\n"),
    _bash("test-stdin", "[ -p /dev/stdin ] && echo pipe || echo not", stdin=b"x"),
]


def _gofmt(name: str, *args: str, stdin: bytes) -> Case:
    return Case("go", name, ("/bin/gofmt", *args), stdin)


_UGLY_GO = (b'package main\nimport ("os";"fmt")\ntype  P struct{X,Y int}\nfunc  main( ) {\n'
            b'ps:=[]P{P{1,2},P{X:3,Y:4}}\nfor i:=range ps {fmt.Println( i,ps[i] ) }\n'
            b'if len(os.Args)>1 {os.Exit(1)} }\n')
#: Debian's gofmt (static Go 1.19): goroutines, the GC and its own diff, fed from stdin.
GO = [
    _gofmt("gofmt", stdin=_UGLY_GO),
    _gofmt("gofmt-s", "-s", stdin=_UGLY_GO),
    _gofmt("gofmt-d", "-d", stdin=_UGLY_GO),
    _gofmt("gofmt-r", "-r", "ps[i] -> ps[len(ps)-1-i]", stdin=_UGLY_GO),
    _gofmt("gofmt-syntax-error", "-e", stdin=b"package main\nfunc main() { x := }\n"),
]

CASES: list[Case] = BUSYBOX + BUSYBOX_SH + BASH + GO + SQLITE + LUA + PYTHON
