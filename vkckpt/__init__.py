"""vkckpt: a DragonFly-style virtual kernel that runs static x86-64 Linux programs on Unicorn.

Public API (see vkckpt(3)):
  KernelConfig, ProcessSpec, load_config  -- describe a vkernel
  VKernel                                 -- the kernel itself (boot with `boot`)
  boot, run, RunResult                    -- start and run a configured vkernel
"""

from vkckpt.config import KernelConfig, ProcessSpec, load_config
from vkckpt.errors import ConfigError, GuestError, ImageError, VkError
from vkckpt.kernel import VKernel
from vkckpt.kernel_idle import Deadlock
from vkckpt.runner import RunResult, boot, exit_code_of, run
from vkckpt.version import __version__

__all__ = [
    "ConfigError", "Deadlock", "GuestError", "ImageError", "KernelConfig", "ProcessSpec",
    "RunResult", "VKernel", "VkError", "__version__", "boot", "exit_code_of", "load_config", "run",
]
