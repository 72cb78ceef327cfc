"""The compatibility suite's cases (testing/compat.py runs them): data, one line each.

Inputs are the files testing/compat.py writes in /work (words, nums, table, csv, prose,
tree/, bin.dat).  Every case prints what is the same on any Linux host for the same root:
no times, pids or host facts, unless the case is about them and says `known`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    """One invocation: argv (argv[0] a guest path), stdin, the suite it belongs to, and why
    its vkernel run differs from the host's if it is a known difference.  A dynamic program
    names the host directories it needs bound read-only at the same guest paths (`binds`)
    and may add to the environment (`env`).  A slow case (python3 importing much of its
    library, each run tens of millions of blocks under the emulator) is left to
    `make compat` so that tests/test_compat.py stays within its time."""

    suite: str
    name: str
    argv: tuple[str, ...]
    stdin: bytes = b""
    known: str = ""  # why the outputs differ (named in vkckpt-abi(7))
    binds: tuple[str, ...] = ()  # host directories bound read-only at the same guest path
    env: tuple[tuple[str, str], ...] = ()  # added to the suite's environment
    slow: bool = False  # over ~5 s with two freezes: run by `make compat`, not by the tests


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


#: Debian's dynamic programs find their libraries in the host's /usr, bound read-only.
USR = ("/usr",)


def _sqlite(name: str, sql: str, *opts: str, db: str = ":memory:", known: str = "") -> Case:
    return Case("sqlite3", name, ("/usr/bin/sqlite3", *opts, db), sql.encode(), known, USR)


def _lua(name: str, *args: str, stdin: bytes = b"", known: str = "") -> Case:
    return Case("lua5.4", name, ("/usr/bin/lua5.4", *args), stdin, known, USR)


def _py(name: str, script: str, stdin: bytes = b"", known: str = "",
        slow: bool = False) -> Case:
    return Case("python3", name, ("/usr/bin/python3", "-S", "-c", script), stdin, known, USR,
                (("PYTHONHASHSEED", "0"),), slow)


#: Why SQLite's shared-memory WAL does not work yet.
_SHM = ("needs writable MAP_SHARED file mappings (issue 14, in progress): SQLite maps its "
        "-shm file with mmap(PROT_WRITE, MAP_SHARED), refused with ENOTSUP, so each statement "
        "after journal_mode=WAL fails with a disk I/O error")

_TABLE = ("create table t(id integer primary key, name text, qty integer);\n"
          "begin;\n" + "".join(f"insert into t(name, qty) values('{w}', {len(w) * i});\n"
                               for i, w in enumerate(("bolt", "nut", "washer", "screw",
                                                      "nut", "bolt", "pin"), 1)) +
          "commit;\n")

SQLITE = [
    _sqlite("select", "select 1+1, upper('ok'), typeof(1.5), 7/2, 7%3, 'a'||'b';"),
    _sqlite("aggregates", _TABLE + "select count(*), sum(qty), avg(qty), min(name), "
            "max(qty) from t;\nselect name, count(*), group_concat(qty, '+') from t "
            "group by name order by name;"),
    _sqlite("journal-file", "pragma journal_mode;\n" + _TABLE +
            "select count(*), total(qty) from t;\npragma integrity_check;", db="/tmp/t.db"),
    _sqlite("rollback", _TABLE + "begin;\ndelete from t;\nselect count(*) from t;\n"
            "rollback;\nselect count(*) from t;", db="/tmp/r.db"),
    _sqlite("wal", "pragma journal_mode=WAL;\n" + _TABLE +
            "update t set qty = qty + 1 where name = 'nut';\n"
            "select sum(qty) from t;\npragma wal_checkpoint(TRUNCATE);\n"
            "pragma journal_mode=DELETE;", db="/tmp/w.db", known=_SHM),
    _sqlite("wal-exclusive", "pragma locking_mode=EXCLUSIVE;\npragma journal_mode=WAL;\n" +
            _TABLE + "delete from t where qty < 10;\npragma wal_checkpoint;\n"
            "select count(*), sum(qty) from t;", db="/tmp/x.db"),
    _sqlite("dump", _TABLE + "create index t_name on t(name);\n.dump"),
    _sqlite("schema", _TABLE + "create view big as select * from t where qty > 10;\n"
            ".tables\n.schema big\nselect * from big order by qty desc;"),
    _sqlite("import-csv", ".mode csv\n.import /work/csv parts\n.mode list\n"
            "select name, qty * 2 from parts order by qty;"),
    _sqlite("cte", "with recursive c(x) as (select 1 union all select x + 1 from c "
            "where x < 100) select sum(x), count(*), max(x) from c;"),
    _sqlite("json", "select json_object('a', 1, 'b', json_array(1, 2, 'x')), "
            "json_extract('{\"k\": [5, 6]}', '$.k[1]');"),
    _sqlite("window", _TABLE + "select name, qty, sum(qty) over (order by id) from t;"),
    _sqlite("reopen", "", "-cmd", "create table k(v); insert into k values(41);",
            db="/tmp/k.db"),
    Case("sqlite3", "two-runs", ("/bin/sh", "-c", "sqlite3 /tmp/p.db 'create table k(v); "
         "insert into k values(6), (7);' && sqlite3 /tmp/p.db 'select v * 6 from k;' && "
         "ls /tmp"), known="", binds=USR),
    _sqlite("error", "select * from nowhere;\nselect 'after';", "-bail"),
]

LUA = [
    _lua("print", "-e", "print(1, string.format('%5.2f|%-4s|%x|%q', 3.14159, 'ab', 255, "
         "'a\\nb'))"),
    _lua("strings", "-e", "local s = 'The quick brown fox' print(s:upper(), #s, "
         "s:find('quick'), s:gsub('o', '0'), s:rep(2, '-'), s:byte(1, 3), s:match('(%a+) "
         "fox'))"),
    _lua("tables", "-e", "local t = {5, 3, 9, 1, 7} table.sort(t) print(table.concat(t, ',')) "
         "table.insert(t, 1, 0) table.remove(t) print(#t, table.concat(t, ' ')) "
         "table.sort(t, function(a, b) return a > b end) print(table.unpack(t))"),
    _lua("math", "-e", "print(7 // 2, 7 / 2, 2^10, math.maxinteger, math.mininteger, "
         "math.type(1), math.type(1.0), math.floor(-2.5), math.fmod(7, 3), math.pi, "
         "math.tointeger(3.0), 1e300 * 1e10, 0x10 | 0x01, 5 ~ 3)"),
    _lua("coroutines", "-e", "local gen = coroutine.wrap(function() for i = 1, 5 do "
         "coroutine.yield(i * i) end end) for _ = 1, 5 do io.write(gen(), ' ') end print() "
         "local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) "
         "return b * 2 end) print(coroutine.resume(co, 1)) print(coroutine.resume(co, 10)) "
         "print(coroutine.status(co), coroutine.resume(co))"),
    _lua("pcall", "-e", "print(pcall(error, 'plain')) print(type(select(2, pcall(error, {})))) "
         "print(select(2, pcall(error, {code = 7})).code) "
         "print(pcall(function() local x = nil; return x.y end)) "
         "print(xpcall(function() error('deep', 0) end, function(m) return 'handled ' .. m "
         "end))"),
    _lua("metatables", "-e", "local V = {} V.__index = V V.__add = function(a, b) return "
         "setmetatable({x = a.x + b.x}, V) end V.__tostring = function(v) return 'V(' .. v.x "
         ".. ')' end local a = setmetatable({x = 2}, V) print(tostring(a + a), "
         "getmetatable(a) == V, rawget(a, 'y'))"),
    _lua("script", "lua/main.lua", "one", "two", "three"),
    _lua("stdin", "-", stdin=b"local n = 0 for l in io.lines() do n = n + #l end print(n)\n"),
    _lua("io-read", "-e", "local s = io.read('a') print(#s, select(2, s:gsub('\\n', '')))",
         stdin=b"line one\nline two\n"),
    _lua("files", "-e", "local f = assert(io.open('/tmp/x', 'w')) f:write('abc\\n', 42, "
         "'\\n') f:close() for l in io.lines('/tmp/x') do print('[' .. l .. ']') end "
         "print(os.rename('/tmp/x', '/tmp/y'), io.open('/tmp/x'), os.remove('/tmp/y'))"),
    _lua("pack-utf8", "-e", "local p = string.pack('<i4 z d', 258, 'hi', 0.5) print(#p, "
         "string.unpack('<i4 z d', p)) print(utf8.char(72, 228, 8364), utf8.len('h\\u{e4}'), "
         "utf8.codepoint('\\u{20ac}'))"),
    _lua("load-env", "-e", "local f = load('return 6 * 7') print(f(), os.getenv('HOME'), "
         "os.getenv('NOPE'), type(os.clock()))"),
    _lua("exit", "-e", "io.write('bye\\n') os.exit(3)"),
    _lua("error", "-e", "print('before') error('uncaught')"),
]

_PY_CLASS = """
class Shape:
    def __init__(self, name): self.name = name
    def area(self): raise NotImplementedError
    def __repr__(self): return f"{type(self).__name__}({self.name!r}, {self.area():.2f})"
class Rect(Shape):
    def __init__(self, w, h): super().__init__("rect"); self.w, self.h = w, h
    def area(self): return self.w * self.h
class Circle(Shape):
    def __init__(self, r): super().__init__("circle"); self.r = r
    def area(self): return 3.14159 * self.r ** 2
shapes = sorted([Rect(2, 3), Circle(1), Rect(1, 1)], key=Shape.area)
print(shapes, sum(s.area() for s in shapes) > 10, Rect.__mro__[1].__name__)
"""

PYTHON = [
    _py("print", "import sys; print(1+1, sys.version_info[0], sys.argv, sys.flags.no_site)"),
    _py("json", "import json; d = json.loads('{\"b\": [1, 2.5, null], \"a\": \"x\"}'); "
        "print(json.dumps(d, sort_keys=True), json.dumps(d, indent=1))", slow=True),
    _py("re", "import re; t = open('prose').read(); print(re.findall(r'\\b\\w{5}\\b', t)); "
        "print(re.sub(r'(\\w+) (\\w+)', r'\\2 \\1', 'hello world')); "
        "print(re.match(r'(?P<k>\\w+)=(?P<v>\\d+)', 'qty=42').groupdict())", slow=True),
    _py("hashlib", "import hashlib; d = open('bin.dat', 'rb').read(); "
        "print(hashlib.sha256(d).hexdigest(), hashlib.md5(d).hexdigest(), "
        "hashlib.blake2b(d, digest_size=8).hexdigest())"),
    _py("itertools", "import itertools as it; print(list(it.permutations('abc', 2))); "
        "print([(k, len(list(g))) for k, g in it.groupby('aabbbc')]); "
        "print(list(it.accumulate(range(6))), list(it.islice(it.count(5, 3), 4)))"),
    _py("class", _PY_CLASS),
    _py("exceptions", "try:\n    try: 1 / 0\n    except ZeroDivisionError as e: "
        "raise ValueError('wrapped') from e\nexcept ValueError as e:\n    "
        "print(repr(e), repr(e.__cause__))\nfinally:\n    print('finally')\n"
        "raise SystemExit(4)"),
    _py("uncaught", "print('before', flush=True); {}['missing']"),
    _py("hashseed", "print(hash('abc'), list({'apple', 'fig', 'kiwi', 'date'}))"),
    _py("files", "import os; os.mkdir('/tmp/d'); open('/tmp/d/f', 'w').write('x' * 100); "
        "print(os.listdir('/tmp'), os.stat('/tmp/d/f').st_size, os.path.getsize('words')); "
        "print(sorted((p, sorted(f)) for p, _, f in os.walk('tree')))"),
    _py("stdin", "import sys; data = sys.stdin.read(); print(len(data), data.split()[::-1])",
        stdin=b"alpha beta gamma\ndelta\n"),
    _py("collections", "import collections as c; w = open('words').read().split(); "
        "print(c.Counter(w).most_common(3)); d = c.defaultdict(list); "
        "[d[x[0]].append(x) for x in w]; print(sorted(d.items())[:3]); "
        "print(c.OrderedDict.fromkeys('banana'))", slow=True),
    _py("struct-zlib", "import struct, zlib; b = struct.pack('<ihd', -5, 300, 2.5); "
        "print(b.hex(), struct.unpack('<ihd', b)); z = zlib.compress(open('prose', 'rb')"
        ".read()); print(len(z), zlib.crc32(z), len(zlib.decompress(z)))"),
    _py("decimal-fractions", "from decimal import Decimal, getcontext; getcontext().prec = 30; "
        "from fractions import Fraction; print(Decimal(1) / Decimal(7), "
        "sum(Fraction(1, n) for n in range(1, 11)))", slow=True),
    _py("random-seeded", "import random; random.seed(7); print([random.randint(1, 100) "
        "for _ in range(6)], random.choice('abcdef'), round(random.random(), 6))", slow=True),
    _py("subprocess", "import subprocess; p = subprocess.run(['/bin/echo', 'from', 'child'], "
        "capture_output=True); print(p.returncode, p.stdout); "
        "print(subprocess.call(['/bin/sh', '-c', 'exit 3']))", slow=True),
    _py("threads", "import threading; n = [0]; lock = threading.Lock()\n"
        "def work():\n    for _ in range(1000):\n        with lock: n[0] += 1\n"
        "ts = [threading.Thread(target=work) for _ in range(4)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]; print(n[0])", slow=True),
    _py("exit-code", "import sys; print('out'); sys.exit(5)"),
    _py("sqlite3-module", "import sqlite3; c = sqlite3.connect(':memory:'); "
        "c.execute('create table t(x)'); c.executemany('insert into t values(?)', "
        "[(i,) for i in range(10)]); print(c.execute('select sum(x), count(*) from t')"
        ".fetchone(), sqlite3.sqlite_version_info[0])", slow=True),
    _py("locks", "import errno, fcntl, os\nf = open('/tmp/lk', 'w'); fcntl.lockf(f, "
        "fcntl.LOCK_EX)\nif os.fork() == 0:\n    g = open('/tmp/lk', 'w')\n"
        "    for lock in (fcntl.lockf, fcntl.flock):\n        try: lock(g, fcntl.LOCK_EX | "
        "fcntl.LOCK_NB); print(lock.__name__, 'locked', flush=True)\n        except OSError as e: "
        "print(lock.__name__, errno.errorcode[e.errno], flush=True)\n    os._exit(0)\n"
        "print(os.wait()[1])",
        known="needs record locks and flock(2) (issue 14, in progress): the child's "
        "F_SETLK succeeds although its parent holds the lock, and flock is ENOSYS"),
    _py("mmap-shared", "import mmap; f = open('/tmp/m', 'w+b'); f.write(b'hello world'); "
        "f.flush(); m = mmap.mmap(f.fileno(), 0); m[0:5] = b'HELLO'; m.flush(); m.close(); "
        "f.seek(0); print(f.read())",
        known="needs writable MAP_SHARED file mappings (issue 14, in progress): "
        "mmap(PROT_WRITE, MAP_SHARED) of a file is refused with ENOTSUP"),
    _py("proc-self", "import os; print(os.readlink('/proc/self/exe')); "
        "print([l for l in open('/proc/self/status') if l.startswith('Name')]); "
        "print(open('/proc/self/cmdline', 'rb').read().split(b'\\0')[:3])",
        known="needs /proc (issue 14, in progress): /proc/self is not there"),
    _py("itimer", "import _signal as s; s.signal(s.SIGALRM, lambda *a: print('alarm')); "
        "s.setitimer(s.ITIMER_REAL, 0.05); s.pause(); print(s.getitimer(s.ITIMER_REAL))",
        known="needs setitimer(2) (issue 14, in progress): it is ENOSYS"),
    _py("chown-mkfifo", "import os, stat; open('/tmp/f', 'w').close(); os.chown('/tmp/f', 0, "
        "0); s = os.stat('/tmp/f'); print(s.st_uid, s.st_gid); os.mkfifo('/tmp/p'); "
        "print(stat.S_ISFIFO(os.stat('/tmp/p').st_mode))",
        known="needs chown(2) and mkfifo (mknodat(2)) (issue 14, in progress): both are "
        "ENOSYS"),
    _py("socketpair", "import _socket; a, b = _socket.socketpair(); a.sendall(b'ping'); "
        "print(b.recv(4)); a.close(); print(b.recv(4))",
        known="needs AF_UNIX sockets (issue 15, in progress): socketpair(2) is ENOSYS"),
    _py("select", "import os, select; r, w = os.pipe(); print(select.select([r], [], [], 0)); "
        "os.write(w, b'x'); print(select.select([r], [w], [], 0) == ([r], [w], []))"),
]

CASES: list[Case] = BUSYBOX + BUSYBOX_SH + BASH + SQLITE + LUA + PYTHON
