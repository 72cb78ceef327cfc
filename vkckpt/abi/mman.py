"""Memory-management numbers of Linux x86-64: the page size, mmap/mprotect/madvise flags."""

PAGE = 4096
TASK_SIZE = 0x7FFF_FFFF_F000  # the end of user space: access_ok()'s bound

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4

MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_GROWSDOWN = 0x100
MAP_NORESERVE = 0x4000
MAP_STACK = 0x20000
MAP_FIXED_NOREPLACE = 0x100000

MADV_DONTNEED = 4

MAP_SHARED_VALIDATE = 0x03
MS_ASYNC, MS_INVALIDATE, MS_SYNC = 1, 2, 4
#: The advice Linux 6.1 accepts (MADV_NORMAL .. MADV_DONTNEED, MADV_FREE .. MADV_COLLAPSE);
#: MADV_HWPOISON and MADV_SOFT_OFFLINE (100, 101) are refused as a kernel without
#: CONFIG_MEMORY_FAILURE refuses them.
MADV_VALID = frozenset((*range(0, 5), *range(8, 26)))
