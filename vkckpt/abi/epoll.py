"""epoll, eventfd, timerfd and signalfd: flags, event bits and struct layouts (x86-64)."""

from __future__ import annotations

import struct

from vkckpt.abi.fcntl import O_CLOEXEC, O_NONBLOCK

# -- poll bits beyond fcntl.py's POLLIN..POLLNVAL (asm-generic/poll.h) --------------------------
POLLRDNORM, POLLRDBAND, POLLWRNORM, POLLWRBAND = 0x40, 0x80, 0x100, 0x200
POLLMSG, POLLRDHUP = 0x400, 0x2000

# -- epoll (uapi/linux/eventpoll.h) -------------------------------------------------------------
EPOLL_CLOEXEC = O_CLOEXEC
EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD = 1, 2, 3
EPOLLIN, EPOLLPRI, EPOLLOUT, EPOLLERR, EPOLLHUP = 0x1, 0x2, 0x4, 0x8, 0x10
EPOLLRDNORM, EPOLLRDBAND, EPOLLWRNORM, EPOLLWRBAND = 0x40, 0x80, 0x100, 0x200
EPOLLMSG, EPOLLRDHUP = 0x400, 0x2000
EPOLLEXCLUSIVE, EPOLLWAKEUP, EPOLLONESHOT, EPOLLET = 1 << 28, 1 << 29, 1 << 30, 1 << 31
#: The flag bits that are not events (Linux's EP_PRIVATE_BITS).
EP_PRIVATE_BITS = EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE
#: What EPOLLEXCLUSIVE may be combined with (EPOLLEXCLUSIVE_OK_BITS).
EPOLLEXCLUSIVE_OK_BITS = EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLWAKEUP | EPOLLET | \
    EPOLLEXCLUSIVE
EP_MAX_NESTS = 4              # epoll inside epoll at most this deep (ELOOP beyond)
EP_MAX_EVENTS = 0x7FFFFFFF // 12  # INT_MAX / sizeof(struct epoll_event)
#: struct epoll_event is packed on x86-64: u32 events, u64 data.
EPOLL_EVENT = struct.Struct("<IQ")

# -- eventfd (uapi/linux/eventfd.h) ---------------------------------------------------------------
EFD_SEMAPHORE, EFD_CLOEXEC, EFD_NONBLOCK = 1, O_CLOEXEC, O_NONBLOCK
EVENTFD_MAX = (1 << 64) - 2   # the counter's largest value (ULLONG_MAX - 1)

# -- timerfd (uapi/linux/timerfd.h) ---------------------------------------------------------------
TFD_CLOEXEC, TFD_NONBLOCK = O_CLOEXEC, O_NONBLOCK
TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET = 1, 2
#: struct itimerspec: it_interval then it_value, each a timespec.
ITIMERSPEC = struct.Struct("<qqqq")

# -- signalfd (uapi/linux/signalfd.h) -------------------------------------------------------------
SFD_CLOEXEC, SFD_NONBLOCK = O_CLOEXEC, O_NONBLOCK
SIGNALFD_SIGINFO_SIZE = 128
#: struct signalfd_siginfo's fields up to ssi_addr_lsb, then padding to 128 bytes.
SIGNALFD_SIGINFO = struct.Struct("<IiiIIiIIIiIIQQQQH")

# -- select (uapi/linux/posix_types.h) ------------------------------------------------------------
FD_SETSIZE = 1024
#: What select's sets mean as poll events (fs/select.c's POLLIN_SET etc.).
POLLIN_SET = EPOLLRDNORM | EPOLLRDBAND | EPOLLIN | EPOLLHUP | EPOLLERR
POLLOUT_SET = EPOLLWRBAND | EPOLLWRNORM | EPOLLOUT | EPOLLERR
POLLEX_SET = EPOLLPRI
