"""Typed exceptions; each is turned into -errno or an exit code at exactly one boundary."""

from __future__ import annotations


class VkError(Exception):
    """Base of every error vkckpt raises on purpose."""


class GuestError(VkError):
    """A system call fails with a Linux errno; the syscall boundary returns -errno."""

    def __init__(self, errno: int, detail: str = "") -> None:
        super().__init__(errno, detail)
        self.errno = errno
        self.detail = detail


class ConfigError(VkError):
    """A bad vkernel configuration or command line."""


class ImageError(VkError):
    """A checkpoint image is malformed, unsupported or inconsistent."""


class GuestBuildError(VkError):
    """A bundled guest program could not be compiled."""
