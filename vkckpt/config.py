"""The vkernel's configuration: built from the command line or a YAML file (vkckpt.yaml(5))."""

from __future__ import annotations

import os
from collections.abc import Callable

from vkckpt.errors import ConfigError
from vkckpt.fs.binds import BindSpec, parse_bind
from vkckpt.fs.publish import parse_publish
from vkckpt.image.limits import MAX_GUEST_MEMORY
from vkckpt.record import Comparable
from vkckpt.vmspace.account import DEFAULT_LIMIT

_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


class ProcessSpec(Comparable):
    """One process the vkernel starts: guest path of the program, argv, environment, cwd."""

    __slots__ = ("program", "argv", "env", "cwd")

    def __init__(self, program: str, argv: list[str], env: dict[str, str] | None = None,
                 cwd: str = "/") -> None:
        self.program = program
        self.argv = argv
        self.env = {} if env is None else env
        self.cwd = cwd


class KernelConfig(Comparable):
    """Everything that determines a vkernel run."""

    __slots__ = ("root", "processes", "quantum", "memory_limit", "seed", "max_processes",
                 "max_threads", "trace_syscalls", "preempt", "cpus", "stdin", "stdout", "stderr",
                 "log", "binds", "publish", "fs", "embed_root")

    def __init__(
        self,
        root: str = ".",
        processes: list[ProcessSpec] | None = None,
        quantum: int = 50_000,        # blocks per time slice
        memory_limit: int = DEFAULT_LIMIT,  # bytes for the whole vkernel (vmspace/account.py)
        seed: int = 0,                # the deterministic random stream
        max_processes: int = 1024,
        max_threads: int = 8192,
        trace_syscalls: bool = False,
        preempt: bool = True,         # False: no block counting at all (benchmarks' bare reference)
        cpus: int | None = None,      # host threads for guest code (None: default_cpus())
        stdin: bytes | None = None,   # None: the host's stdin
        stdout: Callable[[bytes], None] | None = None,
        stderr: Callable[[bytes], None] | None = None,
        log: Callable[[str], None] | None = None,
        binds: list[BindSpec] | None = None,  # host directories in the guest namespace
        publish: list[tuple[int, int]] | None = None,  # host port -> guest port (fs/publish.py)
        fs: str = "host",             # "overlay": the root is a read-only lower layer
        embed_root: bool = False,     # overlay: full images carry the lower layer too
    ) -> None:
        self.root = root
        self.processes = [] if processes is None else processes
        self.quantum = quantum
        self.memory_limit = memory_limit
        self.seed = seed
        self.max_processes = max_processes
        self.max_threads = max_threads
        self.trace_syscalls = trace_syscalls
        self.preempt = preempt
        self.cpus = default_cpus() if cpus is None else cpus  # never changes a result
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.log = log
        self.binds = [] if binds is None else binds
        self.publish = [] if publish is None else publish
        self.fs = fs
        self.embed_root = embed_root


#: The most host threads `cpus` may name.
MAX_CPUS = 64


def default_cpus() -> int:
    """The host CPUs this process may use, at most 4: guest code of different processes
    runs on that many host threads (vkckpt/rounds.py); results never depend on it."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 4))


def parse_cpus(value: object, what: str) -> int:
    """A number of host threads: 1 to MAX_CPUS."""
    n = _positive_int(value, what)
    if n > MAX_CPUS:
        raise ConfigError(f"{what}: at most {MAX_CPUS}")
    return n


def parse_size(value: object, what: str) -> int:
    """Parse 64M, 2g, 4096 ... into bytes."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: not a size: {value!r} (use e.g. 512M or 2G)")
    if isinstance(value, int) and value > 0:
        return value
    text = str(value).strip().lower().removesuffix("b").removesuffix("i")
    unit = text[-1:] if text[-1:] in _SIZE_UNITS else ""
    try:
        n = int(text[: len(text) - len(unit)]) * _SIZE_UNITS[unit]
    except ValueError:
        raise ConfigError(f"{what}: not a size: {value!r} (use e.g. 512M or 2G)") from None
    if n <= 0:
        raise ConfigError(f"{what}: must be positive")
    return n


def parse_memory_limit(value: object, what: str) -> int:
    """A vkernel memory limit: a size no larger than an image may record (so every image a
    run writes thaws)."""
    n = parse_size(value, what)
    if n > MAX_GUEST_MEMORY:
        raise ConfigError(f"{what}: at most {MAX_GUEST_MEMORY >> 30}G (the largest memory "
                          "limit an image may record)")
    return n


_TOP_KEYS = {"root", "processes", "quantum", "memory_limit", "seed", "cpus", "binds",
             "publish", "fs", "embed_root"}
#: What `fs` may name: the root itself, or an overlay over it (fs/overlay.py).
FS_MODES = ("host", "overlay")
_PROC_KEYS = {"program", "argv", "env", "cwd"}


def load_config(path: str | os.PathLike) -> KernelConfig:
    """Read a vkckpt.yaml file; relative roots are taken from the file's directory."""
    from pathlib import Path  # late, like yaml: thawing never reads a YAML configuration

    import yaml  # late: only YAML configurations need it

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ConfigError(f"{p}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{p}: unknown keys: {', '.join(sorted(unknown))}")
    if "root" in data and not isinstance(data["root"], str):
        raise ConfigError(f"{p}: root must be a directory path, got {data['root']!r}")
    root = Path(data.get("root", "."))
    cfg = KernelConfig(root=str(root if root.is_absolute() else p.parent / root))
    if "quantum" in data:
        cfg.quantum = _positive_int(data["quantum"], f"{p}: quantum")
    if "memory_limit" in data:
        cfg.memory_limit = parse_memory_limit(data["memory_limit"], f"{p}: memory_limit")
    if "cpus" in data:
        cfg.cpus = parse_cpus(data["cpus"], f"{p}: cpus")
    if "seed" in data:
        cfg.seed = _positive_int(data["seed"], f"{p}: seed", allow_zero=True)
    if "binds" in data:
        cfg.binds = _binds(data["binds"], p.parent, f"{p}: binds")
    if "publish" in data:
        cfg.publish = _publish(data["publish"], f"{p}: publish")
    if "fs" in data:
        if data["fs"] not in FS_MODES:
            raise ConfigError(f"{p}: fs must be one of {', '.join(FS_MODES)}, got {data['fs']!r}")
        cfg.fs = data["fs"]
    if "embed_root" in data:
        if not isinstance(data["embed_root"], bool):
            raise ConfigError(f"{p}: embed_root must be true or false")
        cfg.embed_root = data["embed_root"]
    if cfg.embed_root and cfg.fs != "overlay":
        raise ConfigError(f"{p}: embed_root needs fs: overlay")
    procs = data.get("processes")
    if not isinstance(procs, list) or not procs:
        raise ConfigError(f"{p}: 'processes' must be a non-empty list")
    cfg.processes = [_process(x, f"{p}: processes[{i}]") for i, x in enumerate(procs)]
    return cfg


def _positive_int(v: object, what: str, allow_zero: bool = False) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < (0 if allow_zero else 1):
        raise ConfigError(f"{what}: expected a {'non-negative' if allow_zero else 'positive'} "
                          f"integer, got {v!r}")
    return v


def _binds(value: object, base: object, what: str) -> list[BindSpec]:
    """YAML binds: a list of "HOST:GUEST[:ro]" strings or {host, guest, ro} mappings;
    relative host paths are taken from the file's directory."""
    if not isinstance(value, list):
        raise ConfigError(f"{what}: expected a list")
    out = []
    for i, x in enumerate(value):
        if isinstance(x, str):
            b = parse_bind(x, f"{what}[{i}]")
        elif isinstance(x, dict) and set(x) <= {"host", "guest", "ro"} and \
                isinstance(x.get("host"), str) and isinstance(x.get("guest"), str) and \
                isinstance(x.get("ro", False), bool):
            b = parse_bind(f"{x['host']}:{x['guest']}", f"{what}[{i}]")
            b.ro = x.get("ro", False)
        else:
            raise ConfigError(f"{what}[{i}]: expected HOST:GUEST[:ro] or a mapping with "
                              "host, guest and optionally ro")
        b.host = os.path.join(os.fspath(base), b.host)  # type: ignore[arg-type]
        out.append(b)
    return out


def _publish(value: object, what: str) -> list[tuple[int, int]]:
    """YAML publish: a list of "HOSTPORT:GUESTPORT" strings."""
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ConfigError(f"{what}: expected a list of HOSTPORT:GUESTPORT strings")
    return [parse_publish(x, f"{what}[{i}]") for i, x in enumerate(value)]


def _process(x: object, what: str) -> ProcessSpec:
    if not isinstance(x, dict) or "program" not in x:
        raise ConfigError(f"{what}: expected a mapping with 'program'")
    unknown = set(x) - _PROC_KEYS
    if unknown:
        raise ConfigError(f"{what}: unknown keys: {', '.join(sorted(unknown))}")
    argv = x.get("argv", [x["program"]])
    env = x.get("env", {})
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ConfigError(f"{what}: argv must be a list of strings")
    if not isinstance(env, dict):
        raise ConfigError(f"{what}: env must be a mapping")
    return ProcessSpec(str(x["program"]), argv, {str(k): str(v) for k, v in env.items()},
                       str(x.get("cwd", "/")))
