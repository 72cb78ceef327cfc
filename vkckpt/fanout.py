"""vkckpt fanout: one image thawed N times with varied inputs, each run's results collected.

The snapshot-exploration use: every run starts from the same warm state and differs only in
what the variation gives it at the thaw (a Variant):

    seed    the vkernel's random stream from the thaw on (getrandom(2), /dev/urandom,
            AT_RANDOM of programs executed later) is the stream of seed S, continuing at the
            image's position in it; bytes already drawn (in guest memory) stay
    env     NAME=VALUE set in the environment of every program the run executes after the
            thaw (execve(2) replaces or adds it in the environment the guest passes);
            processes already running keep theirs, which is in their memory
    stdin   the console input after the thaw: the file's bytes, then end of file (without
            it: end of file at once)

A run is a pure function of (image chain, guest root, variant): `run_one` unpacks a Payload
(the chain's files and the root as a tar, all bytes) into a temporary directory of its own,
thaws there, runs to the end of pid 1 or --max-ticks, and returns a Row of plain values.
So it runs the same in this process, in a worker process, or on a remote Dask worker.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vkckpt.ckpt.chain import load_chain
from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.errors import GuestError, ImageError, VkError
from vkckpt.kernel_state import MAX_EXEC_ENV as MAX_ENV
from vkckpt.kernel_state import MAX_EXEC_ENV_TEXT as MAX_ENV_TEXT
from vkckpt.kernel_state import exec_env

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.kernel import VKernel

#: A guest root shipped to workers is at most this big (packed), and an image chain too.
MAX_ROOT = 1 << 30
MAX_CHAIN_BYTES = 4 << 30
#: Console input one run may be given (--vary stdin).
MAX_STDIN = 64 << 20
#: Guest files collected per run, and the bytes of one read for its digest.
MAX_COLLECT = 64


@dataclass(frozen=True)
class Variant:
    """What run `run` is given at its thaw (None: the image's own)."""

    run: int
    seed: int | None = None
    env: tuple[tuple[str, str], ...] = ()
    stdin: bytes = b""
    stdin_name: str = ""     # where stdin came from, for the table


@dataclass
class Row:
    """One run's results (plain values: they come back from workers, and go to JSONL)."""

    run: int
    seed: int | None
    env: dict[str, str]
    stdin: str
    status: int | None           # pid 1's wait status; None: not ended (see error)
    ticks: int
    stdout_sha256: str
    stderr_sha256: str
    files: dict[str, str | None] = field(default_factory=dict)  # guest path -> sha256
    error: str = ""

    def record(self) -> dict:
        """The JSONL object."""
        return asdict(self)


@dataclass(frozen=True)
class Payload:
    """What a run needs, as bytes: the chain's image files by name, the final one's name,
    and the guest root as an uncompressed tar."""

    images: tuple[tuple[str, bytes], ...]
    final: str
    root: bytes


def pack(image: str, root: str) -> Payload:
    """The chain ending at image (checked as a chain: links, ids) and the root directory
    (symbolic links stored as links, never followed).  VkError when either is too big."""
    chain = load_chain(image)
    files, total = [], 0
    for r in chain:
        total += os.path.getsize(r.path)
        if total > MAX_CHAIN_BYTES:
            raise VkError(f"{image}: the image chain is over {MAX_CHAIN_BYTES >> 30} GiB")
        files.append((os.path.basename(r.path), Path(r.path).read_bytes()))
    if not os.path.isdir(root):
        raise VkError(f"guest root {root} is not a directory")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(root, arcname=".", recursive=True)
        if buf.tell() > MAX_ROOT:
            raise VkError(f"guest root {root} is over {MAX_ROOT >> 30} GiB packed")
    return Payload(tuple(files), os.path.basename(image), buf.getvalue())


def unpack(payload: Payload, where: Path) -> tuple[Path, Path]:
    """Write payload under where: (final image, guest root).  The tar is extracted with
    tarfile's `data` filter: nothing outside the root, no devices, no absolute links."""
    images = where / "images"
    images.mkdir()
    for name, data in payload.images:
        (images / os.path.basename(name)).write_bytes(data)
    root = where / "root"
    root.mkdir()
    with tarfile.open(fileobj=io.BytesIO(payload.root), mode="r:") as tar:
        tar.extractall(root, filter="data")
    return images / os.path.basename(payload.final), root


def _digest(chunks: list[bytes]) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def _collect(k: VKernel, paths: tuple[str, ...]) -> dict[str, str | None]:
    """sha256 of each guest file, opened through the guest root's sandbox (None: missing or
    not a regular file)."""
    got: dict[str, str | None] = {}
    for guest in paths:
        try:
            fd = k.root.host_open(k.root.resolve(guest, "/"), os.O_RDONLY | os.O_NOFOLLOW)
        except (GuestError, OSError):
            got[guest] = None
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                got[guest] = None
                continue
            h = hashlib.sha256()
            while chunk := os.read(fd, 1 << 20):
                h.update(chunk)
            got[guest] = h.hexdigest()
        finally:
            os.close(fd)
    return got


def run_one(payload: Payload, v: Variant, collect: tuple[str, ...],
            max_ticks: int | None, sigthaw: bool = True) -> Row:
    """Thaw payload's image with variant v in a temporary directory of this host, run it
    to the end (or max_ticks), and collect; never raises for a bad image or a failed run
    (the row's error says what happened)."""
    top = Path(tempfile.mkdtemp(prefix="vkckpt-fanout-"))
    out: list[bytes] = []
    err: list[bytes] = []
    row = Row(v.run, v.seed, dict(v.env), v.stdin_name, None, 0, "", "")
    k = None
    try:
        image, root = unpack(payload, top)
        k = thaw(str(image), ThawOptions(root=str(root), stdout=out.append, stderr=err.append,
                                         stdin=v.stdin, deliver_sigthaw=sigthaw))
        k.log = _drop
        if v.seed is not None:
            k.config.seed = v.seed
        k.exec_env = {n.encode(): val.encode() for n, val in v.env}
        row.status = k.exit_status if k.exit_status is not None else k.run(max_ticks)
        if row.status is None:
            row.error = ("the guest asked for checkpoint(2), which fanout does not serve"
                         if k.host_request is not None else f"not ended at {max_ticks} ticks")
        row.ticks = k.sched.ticks
        row.files = _collect(k, collect)
    except VkError as exc:
        row.error = str(exc)
    finally:
        if k is not None:
            k.shutdown()
        shutil.rmtree(top, ignore_errors=True)
    row.stdout_sha256, row.stderr_sha256 = _digest(out), _digest(err)
    return row


def _drop(_: str) -> None:
    """The vkernel's log in a fan-out run: nowhere (rows say what matters)."""


def variants(runs: int, vary: list[list[str]]) -> list[Variant]:
    """The runs' variants from --vary options (each a kind and its arguments); run i takes
    value i (modulo their number) of each list.  ValueError says what is wrong."""
    seeds: list[int | None] = [None]
    envs: list[tuple[str, list[str]]] = []
    stdins: list[tuple[str, bytes]] = [("", b"")]
    for kind, *rest in vary:
        if kind == "seed":
            if len(rest) > 1:
                raise ValueError("--vary seed takes no value or one list S1,S2,...")
            seeds = [int(s) for s in rest[0].split(",")] if rest else list(range(runs))
            if any(not 0 <= s < 1 << 64 for s in seeds):
                raise ValueError("a seed is 0 to 2**64-1")
        elif kind == "env":
            if len(rest) != 1 or "=" not in rest[0]:
                raise ValueError("--vary env takes one NAME=V1,V2,...")
            name, values = rest[0].split("=", 1)
            envs.append((name, values.split(",")))
        elif kind == "stdin":
            if not rest:
                raise ValueError("--vary stdin takes one FILE or more")
            if any(os.path.getsize(f) > MAX_STDIN for f in rest):
                raise ValueError(f"--vary stdin: a file over {MAX_STDIN >> 20} MiB")
            stdins = [(f, Path(f).read_bytes()) for f in rest]
        else:
            raise ValueError(f"--vary {kind}: give seed, env or stdin")
    out = []
    for i in range(runs):
        env = tuple((n, vals[i % len(vals)]) for n, vals in envs)
        try:
            exec_env([[n.encode(), v.encode()] for n, v in env])  # the limits an image keeps
        except ImageError:
            raise ValueError("--vary env: a NAME without '=' or NUL, values without NUL, "
                             f"each at most {MAX_ENV_TEXT} bytes, at most {MAX_ENV}") from None
        name, data = stdins[i % len(stdins)]
        out.append(Variant(i, seeds[i % len(seeds)], env, data, name))
    return out
