"""Fixed limits of the Linux x86-64 ABI that guests can observe."""

NOFILE = 1024          # RLIMIT_NOFILE (soft and hard): descriptors are 0 .. NOFILE-1
UIO_MAXIOV = 1024      # most iovecs one readv/writev/sendmsg takes
MAX_RW_COUNT = 0x7FFF_F000  # most bytes one read/write moves (INT_MAX rounded down to a page)
POLL_MAX_FDS = NOFILE  # poll/ppoll refuse more descriptors than RLIMIT_NOFILE (EINVAL)
PIPE_BUF = 4096        # writes up to this size to a pipe are atomic (and POLLOUT promises room)
RLIM_INFINITY = (1 << 64) - 1
#: (soft, hard) of the resource limits getrlimit reports that are not unlimited, by number:
#: RLIMIT_STACK, RLIMIT_NPROC, RLIMIT_NOFILE (the others are unlimited; none is enforced).
RLIMITS = {3: (8 << 20, RLIM_INFINITY), 6: (4096, 4096), 7: (NOFILE, NOFILE)}
RLIMIT_NLIMITS = 16
