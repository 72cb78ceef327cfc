"""What thaw may believe of an image: its guest root hint and its key (vkckpt-security(7)).

An image is untrusted input: a guest can write one (checkpoint(2) into its own root) and
recompute every checksum.  So the guest root an image records is a *hint*, used only when a
guest could not have chosen it: it is absolute, not the host's ``/``, an existing directory
owned by the caller, and no image of the chain lies inside it -- or the chain is sealed with
the caller's key (`--key FILE`, checked by `ImageReader.check_digests`).  Otherwise thaw
needs ``--root``.  A key file must be the caller's alone and lie outside the guest root.
"""

from __future__ import annotations

import os
import stat

from vkckpt.errors import ImageError
from vkckpt.record import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.image import ImageReader

MIN_KEY = 16
MAX_KEY = 4096


class ImageKey(Value):
    """A secret that seals images (HMAC-SHA256) and the host file it was read from."""

    __slots__ = ("secret", "path")

    def __init__(self, secret: bytes, path: str) -> None:
        self.secret = secret
        self.path = path

    def __repr__(self) -> str:  # never print the secret
        return f"ImageKey({self.path!r})"


def load_key(path: str) -> ImageKey:
    """Read a key file: a regular file of 16 to 4096 bytes, owned by the caller and neither
    readable nor writable by anyone else (ImageError saying what to fix otherwise)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ImageError(f"key file {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"key file {path}: not a regular file")
        if st.st_uid != os.geteuid():
            raise ImageError(f"key file {path}: owned by uid {st.st_uid}, not by you")
        if st.st_mode & 0o077:
            raise ImageError(f"key file {path}: other users can access it (mode "
                             f"{stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
        secret = os.read(fd, MAX_KEY + 1)
    finally:
        os.close(fd)
    if not MIN_KEY <= len(secret) <= MAX_KEY:
        raise ImageError(f"key file {path}: must hold {MIN_KEY} to {MAX_KEY} bytes "
                         f"(e.g. head -c 32 /dev/urandom > {path})")
    return ImageKey(secret, os.path.realpath(path))


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([root, path]) == root


def check_key_outside(key: ImageKey | None, root: str) -> None:
    """Refuse a key file the guests of root could read (or replace)."""
    if key is not None and _inside(key.path, os.path.realpath(root)):
        raise ImageError(f"key file {key.path} lies inside the guest root {root}, where "
                         "guests can read it; move it out")


def guest_root(chain: list[ImageReader], given: str | None, hint: object,
               sealed: bool) -> str:
    """The host directory to thaw chain's guests in: `given` (--root) when there is one,
    else the image's hint when it can be trusted (see the module docstring)."""
    if given is not None:
        return given
    where = chain[-1].path
    why = _distrust(chain, hint, sealed)
    if why:
        raise ImageError(f"{where}: {why}; give --root DIR")
    assert isinstance(hint, str)
    return hint


def _distrust(chain: list[ImageReader], hint: object, sealed: bool) -> str | None:
    """Why the recorded root hint cannot be used (None when it can)."""
    if not isinstance(hint, str) or not hint:
        return "the image records no guest root (it was written inside it)"
    if "\0" in hint or not os.path.isabs(hint):
        return f"the recorded guest root {hint!r} is not an absolute path"
    real = os.path.realpath(hint)
    try:
        st = os.stat(real)
    except OSError as e:
        return f"the recorded guest root {hint} cannot be used ({e.strerror})"
    if not stat.S_ISDIR(st.st_mode):
        return f"the recorded guest root {hint} is not a directory"
    if sealed:
        return None  # written by the key's owner
    if real == "/":
        return "the recorded guest root is the host's /"
    if st.st_uid != os.geteuid():
        return f"the recorded guest root {hint} is owned by uid {st.st_uid}, not by you"
    for r in chain:
        if _inside(os.path.realpath(r.path), real):
            return (f"{r.path} lies inside the recorded guest root {hint}, so a guest "
                    "could have written it")
    return None
