"""`vkckpt export`: the merged tree of an overlay run's image, as the guests saw it.

The lower layer is the image's own (--embed-root) or the given root, checked by its digest;
the upper layer is recreated from the chain in a private directory; their merge (lower +
upper - whiteouts) is written into a fresh hidden directory beside DIR and renamed onto it
(an empty or missing DIR) once complete, so DIR holds the whole tree or nothing new.
"""

from __future__ import annotations

import os
import shutil
import stat

from vkckpt.ckpt import overlay_thaw
from vkckpt.ckpt.chain import DigestCheck, load_chain
from vkckpt.errors import ConfigError, ImageError
from vkckpt.fs.overlay import Overlay, new_private_dir
from vkckpt.fs.treedigest import tree_digest
from vkckpt.host import fs as hostfs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.ckpt.trust import ImageKey


def export(image: str, out: str, root: str | None, key: ImageKey | None = None) -> int:
    """Write image's merged tree into directory out (missing or empty); the number of
    entries written.  ImageError for a bad image, a wrong root or an unusable out."""
    target = _check_out(out)
    images = load_chain(image)
    if key is not None:
        for r in images:
            r.check_digests(key.secret)
    else:
        DigestCheck(images).join()
    heads = [f for t, f in overlay_thaw.records(images[-1]) if t == "overlay"]
    oc = overlay_thaw.begin(images, {"overlay": heads})
    if oc is None:
        raise ImageError(f"{image}: not an image of an overlay run (--fs overlay); its files "
                         "are the guest root's own")
    lower = oc.root or root
    if lower is None:
        overlay_thaw.abandon(oc, None)
        raise ImageError(f"{image}: the lower layer is not embedded; give --root DIR")
    try:
        ov = _layers(lower, oc, images[-1].header.image_id)
        try:
            return _write(ov, target)
        finally:
            ov.close()
    finally:
        overlay_thaw.abandon(oc, None)


def _check_out(out: str) -> str:
    p = os.path.abspath(out)
    if os.path.lexists(p):
        if not os.path.isdir(p) or os.path.islink(p):
            raise ImageError(f"{out}: not a directory")
        if os.listdir(p):
            raise ImageError(f"{out}: not empty; export writes into an empty or new directory")
    if not os.path.isdir(os.path.dirname(p)):
        raise ImageError(f"{out}: its parent directory does not exist")
    return p


def _layers(lower: str, oc: overlay_thaw.OverlayChain, final_id: bytes) -> Overlay:
    if not os.path.isdir(lower):
        raise ImageError(f"guest root {lower} is not a directory")
    fd = hostfs.open_dir(lower)
    try:
        digest = tree_digest(lower)
    except (ConfigError, OSError) as exc:
        os.close(fd)
        raise ImageError(f"guest root {lower}: {exc}") from None
    ov = Overlay(os.path.realpath(lower), fd, digest, new_private_dir("upper"))
    try:
        overlay_thaw.finish(ov, oc, final_id)
    except BaseException:
        ov.close()
        os.close(fd)
        raise
    ov.embedded = None  # the caller's (abandon removes it)
    return ov


def _write(ov: Overlay, target: str) -> int:
    head = os.path.dirname(target)
    tmp = os.path.join(head, hostfs.temp_name())
    os.mkdir(tmp, 0o700)
    try:
        modes: list[tuple[str, int]] = []
        n = _copy_dir(ov, "", tmp, modes)
        for path, mode in reversed(modes):
            os.chmod(path, mode)
        if os.path.isdir(target):
            os.rmdir(target)  # still empty: checked before, and rename needs it gone or empty
        os.rename(tmp, target)
        return n
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _copy_dir(ov: Overlay, rel: str, dst: str, modes: list[tuple[str, int]]) -> int:
    """Copy merged directory rel's entries into dst; entries written."""
    n = 0
    for name, host in ov.merged_names(rel):
        st = os.lstat(host)
        to = os.path.join(dst, name)
        child = f"{rel}/{name}" if rel else name
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(to, 0o700)
            modes.append((to, stat.S_IMODE(st.st_mode)))
            n += 1 + _copy_dir(ov, child, to, modes)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(host), to)
            n += 1
        elif stat.S_ISREG(st.st_mode):
            src = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                fd = os.open(to, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600)
                try:
                    left = st.st_size
                    while left > 0 and (got := os.copy_file_range(src, fd, left)):
                        left -= got
                    os.fchmod(fd, stat.S_IMODE(st.st_mode))
                finally:
                    os.close(fd)
            finally:
                os.close(src)
            n += 1
    return n
