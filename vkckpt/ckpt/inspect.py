"""Human-readable views of images: `vkckpt inspect` (YAML) and `vkckpt verify`."""

from __future__ import annotations

from vkckpt.abi import signals as S
from vkckpt.ckpt import schema
from vkckpt.ckpt.chain import load_chain
from vkckpt.ckpt.depends import Depends
from vkckpt.ckpt.netview import NetView
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.schema import RECORD_VERSIONS
from vkckpt.ckpt.trust import ImageKey
from vkckpt.engine import regs as R
from vkckpt.errors import ImageError, VkError
from vkckpt.fs.binds import BindSpec
from vkckpt.image import ImageReader

_PROT = ["---", "r--", "-w-", "rw-", "--x", "r-x", "-wx", "rwx"]


def _hex(v: int | bytes) -> str:
    if isinstance(v, bytes):
        return "0x" + int.from_bytes(v, "little").to_bytes(len(v), "big").hex()
    return f"{v:#018x}"


def _sigset(mask: int) -> list[str]:
    return [S.signame(s) for s in range(1, S.NSIG + 1) if mask & S.sigbit(s)]


def describe(path: str, registers: bool = True, key: ImageKey | None = None) -> dict:
    """Everything an image says, as plain data ready for YAML (ImageError if malformed, or
    not sealed with key when one is given)."""
    try:
        return _describe(path, registers, key)
    except ImageError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
        raise ImageError(f"{path}: malformed image ({type(exc).__name__}: {exc})") from None


def _describe(path: str, registers: bool, key: ImageKey | None) -> dict:
    r = ImageReader(path)
    if key is not None:
        r.check_digests(key.secret)
    h = r.header
    out: dict = {"image": str(path), "format": f"{h.major}.{h.minor}", "producer": h.producer,
                 "vkernel_id": h.vkernel_id.hex(), "image_id": h.image_id.hex(),
                 "parent_id": h.parent_id.hex() if h.parent_id else None,
                 "incremental": h.incremental, "compression": h.codec}
    procs: dict[int, dict] = {}
    stats = {"stored_pages": 0, "stored_bytes": 0, "zeroed_pages": 0, "covered_pages": 0,
             "chunks": 0}
    files = {}
    ghosts: list[dict] = []
    ghost_stored = 0
    deps = Depends()
    net = NetView()
    for rec in r.records(RECORD_VERSIONS):
        f = rec.fields
        schema.check(rec.type, f)
        deps.record(rec.type, f)
        net.record(rec.type, f)
        if rec.type == "kernel":
            out["kernel"] = {k: f[k] for k in ("ticks", "quantum", "memory_limit", "seed",
                                               "next_pid", "init_pid", "scope",
                                               "root")}
        elif rec.type == "process":
            procs[f["pid"]] = {
                "pid": f["pid"], "ppid": f["ppid"], "exe": f["exe"],
                "argv": [a.decode(errors="replace") for a in f["argv"]],
                "state": "zombie" if f["zombie"] else "stopped" if f["stopped"] else "live",
                "cwd": f["cwd"], "children": f["children"],
                "signal_actions": {S.signame(a[0]): {"handler": _hex(a[1]), "flags": hex(a[2]),
                                                     "mask": _sigset(a[4])}
                                   for a in f["actions"]},
                "pending": [S.signame(i["signo"]) for i in f["pending"]],
                "fds": {fd: fid for fd, fid, _ in f["fds"]}, "threads": [], "vmas": []}
        elif rec.type == "vmspace":
            p = procs[f["pid"]]
            p["brk"] = _hex(f["brk"])
            for start, end, prot, _fl, name, bid, _off, _path, _foff in f["vmas"]:
                p["vmas"].append(f"{start:#014x}-{end:#014x} {_PROT[prot & 7]} buf{bid} {name}")
                stats["covered_pages"] += (end - start) // 4096
        elif rec.type == "thread":
            t = {"tid": f["tid"], "state": f["state"], "sigmask": _sigset(f["sigmask"]),
                 "pending": [S.signame(i["signo"]) for i in f["pending"]],
                 "altstack": f["altstack"], "ticks": f["ticks"]}
            if f["sleep"]:
                s = f["sleep"]
                t["sleeping_in"] = {"syscall": s["nr"], "queue": s["queue"],
                                    "deadline": s["deadline"]}
            if f["progress"]:  # a write asleep with part of its bytes written
                t["written_so_far"] = f["progress"]
            if registers:
                t["registers"] = {n: _hex(f["regs"][n]) for n in R.ALL_REGS}
            procs[f["pid"]]["threads"].append(t)
        elif rec.type == "file":
            files[f["id"]] = {k: v for k, v in f.items() if k in ("kind", "path", "offset",
                                                                   "stream", "pipe", "ghost")}
        elif rec.type == "ghost":
            ghosts.append({"id": f["id"], "inode": f["vino"], "size": f["size"],
                           "path": f["path"]})
        elif rec.type == "ghost_data":
            ghost_stored += len(f["data"])
        elif rec.type == "pages":
            stats["stored_pages"] += f["count"]
            stats["stored_bytes"] += len(f["data"])
            stats["chunks"] += 1
        elif rec.type == "zero_pages":
            stats["zeroed_pages"] += sum(b - a for a, b in f["ranges"])
    for p in procs.values():
        p["fds"] = {fd: files.get(fid, fid) for fd, fid in p["fds"].items()}
    out["processes"] = list(procs.values())
    out["pages"] = stats
    if ghosts:  # open unlinked files whose bytes the image carries
        out["ghosts"] = {"count": len(ghosts), "bytes": sum(g["size"] for g in ghosts),
                         "stored_bytes": ghost_stored, "files": ghosts}
    out.update(net.report())
    out["depends_on"] = deps.report()
    return out


def verify(path: str, root: str | None = None, key: ImageKey | None = None,
           binds: list[BindSpec] | None = None) -> dict:
    """Check every checksum, the incremental chain, the seals (with key) and the structure,
    reopening the guests' files read-only (binds: the image's binds given again, checked as
    thaw checks them); raises ImageError."""
    chain = load_chain(path)
    report = {"image": str(path), "chain": [str(r.path) for r in chain], "checks": []}
    for r in chain:
        stats = r.verify(RECORD_VERSIONS)
        report["checks"].append({"image": str(r.path), **stats})
    try:
        k = thaw(path, ThawOptions(root=root, allow_changed_files=True, deliver_sigthaw=False,
                                   key=key, read_only=True, binds=binds))
    except ImageError:
        raise
    except VkError as exc:
        raise ImageError(f"{path}: structure check failed: {exc}") from None
    report["processes"] = len(k.procs)
    report["threads"] = len(k.threads)
    k.shutdown()
    report["ok"] = True
    return report
