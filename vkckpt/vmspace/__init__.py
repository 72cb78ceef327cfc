"""Address spaces: VMAs, host memory behind them, ELF loading."""

from vkckpt.vmspace.vma import PAGE, Vma, VmaList, page_down, page_up
from vkckpt.vmspace.vmspace import VmSpace

__all__ = ["PAGE", "Vma", "VmaList", "VmSpace", "page_down", "page_up"]
