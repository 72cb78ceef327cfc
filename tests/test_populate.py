"""host/pagemap.populate_write: backing pages ahead of fork's copy changes no byte of either
buffer."""

from __future__ import annotations

import ctypes

from vkckpt.abi.mman import PAGE
from vkckpt.host.pagemap import populate_write, present_runs
from vkckpt.vmspace.hostmem import HostBuffer
from vkckpt.vmspace.vmspace import VmSpace


def test_populated_pages_read_as_zeros_and_are_present() -> None:
    buf = HostBuffer(64 * PAGE).incref()
    try:
        if populate_write(buf.addr + 8 * PAGE, 16 * PAGE):  # False on kernels before 5.14
            assert present_runs(buf.addr, 64) == [(8, 24)]
        assert bytes(buf.view) == bytes(64 * PAGE)
    finally:
        buf.decref()


def test_fork_copies_every_present_page_exactly() -> None:
    vm = VmSpace(_NullEngine())  # type: ignore[arg-type]
    addr = vm.mmap(0x10_0000, 256 * PAGE, 3, 0x22, name="data")  # private anonymous, named
    v = vm.vmas.find(addr)
    for page in (0, 1, 2, 40, 41, 200, *range(100, 140)):  # one run long enough to populate
        ctypes.memset(v.buf.addr + v.off + page * PAGE + 5, page + 1, 100)
    child = VmSpace.fork(vm, _NullEngine())  # type: ignore[arg-type]
    c = child.vmas.find(addr)
    assert c.buf is not v.buf
    assert bytes(c.buf.view[c.off:c.off + c.size]) == bytes(v.buf.view[v.off:v.off + v.size])


class _NullEngine:
    """Takes the vmspace's engine calls and does nothing (no guest runs here)."""

    def map_host(self, *a: object) -> None: ...
    def unmap(self, *a: object) -> None: ...
    def protect(self, *a: object) -> None: ...
