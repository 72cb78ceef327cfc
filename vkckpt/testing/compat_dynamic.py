"""The compatibility suite's cases of Debian's dynamic programs: sqlite3, lua5.4, python3.

Each runs from the host's /usr, bound read-only at /usr on both sides (testing/compat.py),
on the inputs of testing/compat_inputs.py.  Every case prints what is the same on any Linux
host for the same root; python3 runs with -S and PYTHONHASHSEED=0 so that neither the site
directories nor the hash seed reach its output.
"""

from __future__ import annotations

from vkckpt.testing.compat_case import Case

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
            "pragma journal_mode=DELETE;", db="/tmp/w.db"),
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
    _sqlite("cmd-then-stdin", "select v + 1 from k;\n", "-cmd",
            "create table k(v); insert into k values(41);", db="/tmp/k.db"),
    Case("sqlite3", "two-runs", ("/bin/sh", "-c", "S=/usr/bin/sqlite3; $S /tmp/p.db "
         "'create table k(v); insert into k values(6), (7);' && $S /tmp/p.db "
         "'select v * 6 from k;' && ls /tmp"), binds=USR),
    _sqlite("error", "select 'before';\nselect * from nowhere;\nselect 'after';", "-bail"),
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
    _lua("stdin", "-", stdin=b"local t = {} for i = 1, 5 do t[i] = i * i end "
         b"print(table.concat(t, ' '), #arg, arg[0])\n"),
    _lua("io-read", "-e", "local s = io.read('a') print(#s, select(2, s:gsub('\\n', '')))",
         stdin=b"line one\nline two\n"),
    _lua("files", "-e", "local f = assert(io.open('/tmp/x', 'w')) f:write('abc\\n', 42, "
         "'\\n') f:close() for l in io.lines('/tmp/x') do print('[' .. l .. ']') end "
         "print(os.rename('/tmp/x', '/tmp/y'), io.open('/tmp/x'), os.remove('/tmp/y'))"),
    _lua("tmpfile", "-e", "local f = io.tmpfile() f:write('ghost ', 1, '\\n') f:seek('set') "
         "print(f:read('a')) local g = assert(io.open('/tmp/gh', 'w+')) os.remove('/tmp/gh') "
         "g:write(string.rep('x', 5000), 'end') g:seek('set', 4998) print(g:read('a'), "
         "g:seek('end'), io.open('/tmp/gh')) f:close() g:close()"),
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
shapes = sorted([Rect(2, 3), Circle(1), Rect(1, 1)], key=lambda s: s.area())
print(shapes, sum(s.area() for s in shapes) > 10, Rect.__mro__[1].__name__)
"""

#: TCP over the virtual loopback: an echo server thread and a client (no ports printed).
_PY_TCP_ECHO = """import socket, threading
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()
def serve():
    c, peer = s.accept()
    print('peer', peer[0], flush=True)
    with c:
        while d := c.recv(1024):
            c.sendall(d.upper())
t = threading.Thread(target=serve); t.start()
c = socket.create_connection(s.getsockname())
for w in (b'alpha', b'beta', b'gamma'):
    c.sendall(w); print(c.recv(1024), flush=True)
c.shutdown(socket.SHUT_WR); print(c.recv(1024)); c.close(); t.join()
print(s.getsockname()[1] >= 1024)
"""

#: asyncio streams: a server and a client on one event loop.
_PY_ASYNCIO = """import asyncio
async def handle(r, w):
    while line := await r.readline():
        w.write(line.upper()); await w.drain()
    w.close()
async def main():
    srv = await asyncio.start_server(handle, '127.0.0.1', 0)
    r, w = await asyncio.open_connection(*srv.sockets[0].getsockname())
    for m in (b'one', b'two', b'three'):
        w.write(m + b'\\n'); await w.drain(); print(await r.readline())
    w.close(); await w.wait_closed(); srv.close(); await srv.wait_closed(); print('done')
asyncio.run(main())
"""

#: http.server in a thread answering urllib.request (the Date header is dropped).
_PY_HTTP = """import http.server, threading, urllib.request
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ('path=' + self.path).encode()
        self.send_response(200); self.send_header('Content-Length', str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.HTTPServer(('127.0.0.1', 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
for path in ('/x?y=1', '/second'):
    with urllib.request.urlopen('http://127.0.0.1:%d%s' % (srv.server_address[1], path)) as r:
        print(r.status, r.read(), [kv for kv in r.headers.items() if kv[0] != 'Date'])
srv.shutdown(); srv.server_close(); print('done')
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
        "print(os.wait()[1])"),
    _py("mmap-shared", "import mmap; f = open('/tmp/m', 'w+b'); f.write(b'hello world'); "
        "f.flush(); m = mmap.mmap(f.fileno(), 0); m[0:5] = b'HELLO'; m.flush(); m.close(); "
        "f.seek(0); print(f.read())"),
    _py("proc-self", "import os; print(os.readlink('/proc/self/exe')); "
        "print([l for l in open('/proc/self/status') if l.startswith('Name')]); "
        "print(open('/proc/self/cmdline', 'rb').read().split(b'\\0')[:3])"),
    _py("itimer", "import _signal as s; s.signal(s.SIGALRM, lambda *a: print('alarm')); "
        "s.setitimer(s.ITIMER_REAL, 0.05); s.pause(); print(s.getitimer(s.ITIMER_REAL))"),
    _py("chown-mkfifo", "import os, stat; open('/tmp/f', 'w').close(); os.chown('/tmp/f', 0, "
        "0); s = os.stat('/tmp/f'); print(s.st_uid, s.st_gid); os.mkfifo('/tmp/p'); "
        "print(stat.S_ISFIFO(os.stat('/tmp/p').st_mode))"),
    _py("socketpair", "import _socket; a, b = _socket.socketpair(); a.sendall(b'ping'); "
        "print(b.recv(4)); a.close(); print(b.recv(4))"),
    _py("select", "import os, select; r, w = os.pipe(); print(select.select([r], [], [], 0)); "
        "os.write(w, b'x'); print(select.select([r], [w], [], 0) == ([r], [w], []))"),
    _py("tcp-echo-threads", _PY_TCP_ECHO, slow=True),
    _py("asyncio-streams", _PY_ASYNCIO, slow=True),
    _py("http-server-urllib", _PY_HTTP, slow=True),
]
