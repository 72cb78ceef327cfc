"""Socket data: send/recv in every form (sendto, recvfrom, sendmsg, recvmsg, sendmmsg,
recvmmsg), with control messages (SCM_RIGHTS, SCM_CREDENTIALS) as ____sys_sendmsg and
scm_recv lay them out."""

from __future__ import annotations

import struct

from vkckpt import task_signals
from vkckpt.abi import errno as E
from vkckpt.abi import signals as SG
from vkckpt.abi import socket as S
from vkckpt.errors import GuestError
from vkckpt.fs.unix_file import SocketFile, drop_files
from vkckpt.sigsend import kernel_info
from vkckpt.syscalls import progress, sys_inet
from vkckpt.syscalls.args import iovec_arg, s32, u32
from vkckpt.syscalls.sys_socket import cred_of, find, put_name, sock_arg

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.ops import OpenFile
    from vkckpt.fs.unix import Cred
    from vkckpt.fs.unix_io import Received
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Sleep, Thread

def _control(t: Thread, addr: int, size: int, inet: bool) -> tuple[list[OpenFile], Cred]:
    """The files (SCM_RIGHTS) and credentials (SCM_CREDENTIALS, else the caller's) a
    sendmsg's control buffer carries (__scm_send); EINVAL for a malformed message or an
    unknown SOL_SOCKET one; messages of other levels are skipped.  An internet socket
    carries neither: sock_cmsg_send ignores them (so no file goes in flight over TCP or
    UDP), and the few other SOL_SOCKET ones it takes."""
    fds: list[OpenFile] = []
    cred = cred_of(t)
    raw = t.process.vm.read(addr, size) if size else b""
    off = 0
    while off + S.CMSG_HDR.size <= size:
        clen, level, ctype = S.CMSG_HDR.unpack_from(raw, off)
        if clen < S.CMSG_HDR.size or off + clen > size:
            raise GuestError(E.EINVAL)
        body = raw[off + S.CMSG_HDR.size: off + clen]
        off += S.cmsg_align(clen)
        if level != S.SOL_SOCKET:
            continue
        if inet:
            if ctype not in S.INET_SOL_CMSGS:
                raise GuestError(E.EINVAL)
            continue
        if ctype == S.SCM_RIGHTS:
            nums = struct.unpack(f"<{len(body) // 4}i", body[: len(body) // 4 * 4])
            if len(fds) + len(nums) > S.SCM_MAX_FD:
                raise GuestError(E.EINVAL)
            fds += [t.process.fds.get(n) for n in nums]
        elif ctype == S.SCM_CREDENTIALS and len(body) == S.UCRED.size:
            cred = S.UCRED.unpack(body)
        else:
            raise GuestError(E.EINVAL)
    return fds, cred


def _gather(t: Thread, segs: list[tuple[int, int]]) -> bytes:
    return b"".join(t.process.vm.read(base, n) for base, n in segs if n)


def _scatter(t: Thread, segs: list[tuple[int, int]], data: bytes) -> None:
    at = 0
    for base, n in segs:
        if at >= len(data):
            return
        t.process.vm.write(base, data[at: at + n])
        at += n


def send_one(k: VKernel, t: Thread, f: SocketFile, data: bytes, name: int, nlen: int,
             extra: tuple[list[OpenFile], Cred] | None, flags: int) -> int:
    """One send to the peer or to the address at name, of data: what is left after the
    t.progress bytes earlier runs sent (a blocking stream send goes on until all is sent,
    progress.py); EPIPE with nothing sent sends SIGPIPE unless
    MSG_NOSIGNAL."""
    if flags & S.MSG_OOB:
        raise GuestError(E.EOPNOTSUPP)
    dest = None
    if f.sock.inet is not None:
        dest = sys_inet.dest(t, f, name, nlen) if name and s32(nlen) else None
    elif name and s32(nlen):
        if f.sock.type == S.SOCK_STREAM:
            raise GuestError(E.EISCONN if f.sock.peer is not None else E.EOPNOTSUPP)
        if f.sock.type == S.SOCK_DGRAM:
            dest = find(k, t, name, nlen)
    fds, cred = extra if extra is not None else ([], cred_of(t))
    try:
        if not f.waits_for_all:
            return f.send(data, dest, fds, cred, flags)
        # the files go with the first bytes only, as Linux attaches them to the first skb
        return progress.write_all(
            t, lambda chunk, at: f.send(chunk, dest, [] if at else fds, cred, flags), data)
    except GuestError as exc:
        if exc.errno == E.EPIPE and f.sigpipe and not flags & S.MSG_NOSIGNAL:
            task_signals.send_to_thread(k, t, kernel_info(SG.SIGPIPE))
        raise


def sys_sendto(k: VKernel, t: Thread, fd: int, buf: int, n: int, flags: int, name: int,
               nlen: int) -> int:
    f = sock_arg(t, fd)
    data = _gather(t, progress.skip([(buf, u32(n))], t.progress))  # after what went
    return send_one(k, t, f, data, name, nlen, None, u32(flags))


def _sendmsg(k: VKernel, t: Thread, f: SocketFile, msg: int, flags: int) -> tuple[int, bool]:
    """One sendmsg: (its result, whether it sent all its bytes)."""
    name, nlen, iov, iovlen, ctl, ctllen, _ = S.MSGHDR.unpack(t.process.vm.read(msg, 56))
    segs = iovec_arg(t, iov, iovlen)
    data = _gather(t, progress.skip(segs, t.progress))
    want = t.progress + len(data)
    extra = _control(t, ctl, ctllen, f.sock.inet is not None)
    n = send_one(k, t, f, data, name, nlen, extra, flags)
    return n, n >= want


def sys_sendmsg(k: VKernel, t: Thread, fd: int, msg: int, flags: int) -> int:
    return _sendmsg(k, t, sock_arg(t, fd), msg, u32(flags))[0]


def sys_sendmmsg(k: VKernel, t: Thread, fd: int, vec: int, vlen: int, flags: int) -> int:
    """Implement sendmmsg(2): messages in order, each a whole sendmsg (a blocking one
    waits, a stream one until all is sent), its length in its msg_len; once one is sent,
    an error ends the call with the count.  While it sleeps, t.progress_msgs counts the
    messages done (t.progress the bytes of the current one).  A message sent short (non-
    blocking, or an error after some bytes) ends the call."""
    f = sock_arg(t, fd)
    count = min(u32(vlen), S.UIO_MAXIOV_MMSG)
    while t.progress_msgs < count:
        at = vec + t.progress_msgs * S.MMSGHDR_SIZE
        try:
            n, whole = _sendmsg(k, t, f, at, u32(flags))
        except GuestError:
            if t.progress_msgs:
                return _mmsg_done(t)
            raise
        t.process.vm.write(at + S.MSGHDR.size, struct.pack("<I", n))
        t.progress_msgs += 1
        if not whole:  # a short send ends the call (msg_data_left in __sys_sendmmsg)
            break
    return _mmsg_done(t)


def _mmsg_done(t: Thread) -> int:
    """End a sendmmsg/recvmmsg: the count of messages it did."""
    n, t.progress_msgs = t.progress_msgs, 0
    return n


def mmsg_interrupted(k: VKernel, t: Thread, s: Sleep) -> int:
    """A signal ended a sendmmsg/recvmmsg asleep: the messages done, counting one sent in
    part (its msg_len the bytes that went); -EINTR when none (sigsend.interrupt clears
    the counts)."""
    n = t.progress_msgs
    if t.progress:  # sendmmsg, in the middle of a stream message
        t.process.vm.write(s.args[1] + n * S.MMSGHDR_SIZE + S.MSGHDR.size,
                           struct.pack("<I", t.progress))
        n += 1
    return n if n else -E.EINTR


def _put_cmsg(out: bytearray, room: int, ctype: int, body: bytes) -> int:
    """Append one control message as put_cmsg (truncated to room: MSG_CTRUNC)."""
    if room < S.CMSG_HDR.size:
        return S.MSG_CTRUNC
    full = S.cmsg_len(len(body))
    raw = S.CMSG_HDR.pack(full, S.SOL_SOCKET, ctype) + body
    if room < full:
        out += raw[:room]
        return S.MSG_CTRUNC
    out += raw + b"\0" * (min(S.cmsg_space(len(body)), room) - full)
    return 0


def _rights(t: Thread, out: bytearray, room: int, files: list[OpenFile],
            flags: int) -> int:
    """Install as many received files as the buffer has room for (scm_detach_fds);
    MSG_CTRUNC when some do not fit (those are closed)."""
    fit = max((room - S.CMSG_HDR.size) // 4, 0)
    if fit <= 0:
        return S.MSG_CTRUNC
    cloexec = bool(flags & S.MSG_CMSG_CLOEXEC)
    nums = [t.process.fds.install(f, cloexec) for f in files[:fit]]
    body = struct.pack(f"<{len(nums)}i", *nums)
    return _put_cmsg(out, room, S.SCM_RIGHTS, body) | (S.MSG_CTRUNC if fit < len(files)
                                                       else 0)


def _control_out(t: Thread, got: Received, room: int, flags: int) -> tuple[bytes, int]:
    """The control messages of a receive (credentials, then files) and MSG_CTRUNC."""
    out = bytearray()
    mflags = 0
    if got.cred is not None:
        mflags |= _put_cmsg(out, room, S.SCM_CREDENTIALS, S.UCRED.pack(*got.cred))
    if got.fds:
        mflags |= _rights(t, out, room - len(out), got.fds, flags)
    if not flags & S.MSG_PEEK:
        drop_files(got.fds)  # installed ones hold their own reference now
    return bytes(out), mflags


def _recvmsg(t: Thread, f: SocketFile, msg: int, flags: int) -> int:
    vm = t.process.vm
    name, nlen, iov, iovlen, ctl, ctllen, _ = S.MSGHDR.unpack(vm.read(msg, 56))
    segs = iovec_arg(t, iov, iovlen)
    got = f.recv(sum(n for _, n in segs), flags)
    _scatter(t, segs, got.data)
    cmsgs, cflags = _control_out(t, got, ctllen, flags)
    if cmsgs:
        vm.write(ctl, cmsgs)
    if name:
        raw = f.sockaddr(got.addr) if got.addr is not None else b""
        vm.write(name, raw[:nlen])
        vm.write(msg + 8, struct.pack("<I", len(raw)))
    vm.write(msg + 40, struct.pack("<Qi", len(cmsgs), got.flags | cflags))
    return got.result


def sys_recvmsg(k: VKernel, t: Thread, fd: int, msg: int, flags: int) -> int:
    return _recvmsg(t, sock_arg(t, fd), msg, u32(flags))


def sys_recvfrom(k: VKernel, t: Thread, fd: int, buf: int, n: int, flags: int, name: int,
                 nlen: int) -> int:
    """Implement recvfrom(2); files sent with the data are closed unreceived."""
    f = sock_arg(t, fd)
    got = f.recv(u32(n), u32(flags))
    t.process.vm.write(buf, got.data)
    if not u32(flags) & S.MSG_PEEK:
        drop_files(got.fds)
    if name and nlen:
        if got.addr is not None:
            put_name(t, name, nlen, f.sockaddr(got.addr))
        else:
            t.process.vm.write(nlen, b"\0\0\0\0")  # an unnamed sender: no address
    return got.result


def sys_recvmmsg(k: VKernel, t: Thread, fd: int, vec: int, vlen: int, flags: int,
                 timeout: int) -> int:
    """Implement recvmmsg(2): up to vlen messages, each a whole recvmsg (a blocking one
    waits for each, or only for the first with MSG_WAITFORONE); once one is received, an
    error ends the call with the count.  t.progress_msgs counts them while it sleeps."""
    f = sock_arg(t, fd)
    count = min(u32(vlen), S.UIO_MAXIOV_MMSG)
    while t.progress_msgs < count:
        at = vec + t.progress_msgs * S.MMSGHDR_SIZE
        more = S.MSG_DONTWAIT if t.progress_msgs and u32(flags) & S.MSG_WAITFORONE else 0
        try:
            n = _recvmsg(t, f, at, u32(flags) | more)
        except GuestError:
            if t.progress_msgs:
                return _mmsg_done(t)
            raise
        t.process.vm.write(at + S.MSGHDR.size, struct.pack("<I", n))
        t.progress_msgs += 1
    return _mmsg_done(t)
