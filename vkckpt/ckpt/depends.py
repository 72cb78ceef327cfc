"""Which guest-root paths an image depends on: what thaw reopens, and what the thawed
guests name and so expect to find again (`vkckpt inspect`'s depends_on).

Read from one image's structural records (every image of a chain carries them all):
  reopen    open regular files, directories and named FIFOs (file records), and files
            mapped MAP_SHARED (filemap records): thaw opens each by guest path and checks
            its fingerprint, so a missing or changed file refuses the thaw.
  cwd/root  a process's working directory and chroot(2) root: resolved again at its next
            path lookup, not opened by thaw.
  exe       a process's executable (/proc/PID/exe, execve of itself), and a MAP_PRIVATE
            file mapping's file: their bytes are in the image, only the name is kept.
  socket    a bound AF_UNIX socket's path, which thaw binds again.
Ghost files (open and unlinked) are carried in the image and depend on nothing.
"""

from __future__ import annotations

#: Why a path is needed, in the order a report lists them.
REASONS = ("reopen", "mapped", "cwd", "root", "exe", "private-map", "socket")


class Depends:
    """Collects (path -> reasons) from an image's records, fed one at a time."""

    __slots__ = ("paths",)

    def __init__(self) -> None:
        self.paths: dict[str, set[str]] = {}

    def _add(self, path: object, why: str) -> None:
        if isinstance(path, str) and path.startswith("/"):
            self.paths.setdefault(path, set()).add(why)

    def record(self, rtype: str, f: dict) -> None:
        """Take what record (rtype, fields f) makes thaw or the guests depend on."""
        if rtype == "file" and f.get("kind") in ("host", "dir", "fifo") and not f.get("ghost"):
            self._add(f.get("path"), "reopen")
        elif rtype == "filemap":
            self._add(f.get("path"), "mapped")
        elif rtype == "process":
            self._add(f.get("cwd"), "cwd")
            self._add(f.get("root") or None, "root")
            self._add(f.get("exe"), "exe")
        elif rtype == "vmspace":
            for v in f.get("vmas", []):
                if len(v) > 7 and v[7]:
                    self._add(v[7], "private-map")
        elif rtype == "socket":
            self._add(f.get("path"), "socket")

    def report(self) -> list[dict]:
        """[{path, why: [reason...]}] sorted by path; shared file mappings are reopened too,
        so 'mapped' stands for both."""
        out = []
        for path in sorted(self.paths):
            why = self.paths[path]
            if "mapped" in why:
                why.discard("private-map")
            out.append({"path": path, "why": [r for r in REASONS if r in why]})
        return out
