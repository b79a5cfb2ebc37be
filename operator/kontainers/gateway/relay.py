"""Relaying a file's content from the sidecar's reply to the client's, without copying it through Python.

Streamed chunk by chunk, every byte of a download is received into this process and sent out
again: two copies across the kernel boundary and an event-loop turn per chunk, which on a busy
node costs about as much CPU as the sidecar spends reading the file. On Linux the body is instead
spliced socket → pipe → socket (splice(2)): the kernel passes page references along and the bytes
never enter Python. Memory stays flat either way (one pipe, at most `PIPE_BYTES`).

Splicing is used only where it is provably the same bytes the chunk loop would send:
- both connections are plain TCP (raw bytes written under a TLS transport would corrupt it);
- the sidecar's reply has a Content-Length and no Transfer-Encoding, so what follows its headers
  on the socket is exactly the body, and no more than that is taken;
- aiohttp's reader of that reply never paused its parser: a paused parser keeps unparsed bytes
  of its own that nothing outside it can see. The reader pauses only past its high-water mark,
  so while everything it has received is still buffered and under that mark, it holds every body
  byte read from the socket so far. Those bytes are sent first, then its socket is spliced.
Otherwise (or where the kernel refuses splice) the body is streamed chunk by chunk. After a splice
the sidecar connection is closed, not pooled: its parser never saw the body.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
from collections.abc import Callable

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

# How much of a reply aiohttp buffers before it pauses reading (its high-water mark is twice
# this): large, so a body is taken over before the parser could ever pause.
READ_BUFSIZE = 1024 * 1024
PIPE_BYTES = 1024 * 1024  # Linux's default cap (fs.pipe-max-size) for an unprivileged pipe
_SPLICE = hasattr(os, "splice")
_FLAGS = (os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK) if _SPLICE else 0
# splice(2) refusing the sockets themselves (a seccomp profile, an old kernel): stream instead.
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP}

OnBytes = Callable[[int], None]


class _Unsupported(Exception):
    """splice(2) refused before any byte moved."""


async def relay(upstream: aiohttp.ClientResponse, request: web.Request, response: web.StreamResponse,
                on_bytes: OnBytes) -> None:
    """Prepare `response` and send `upstream`'s body as its body, then end it.

    Errors reading the sidecar are aiohttp.ClientPayloadError, a client gone is
    aiohttp.ClientConnectionResetError, as from the chunk loop."""
    writer = await response.prepare(request)
    downstream = request.transport
    # HEAD: aiohttp's writer decides what a body-less reply sends, so it keeps doing that.
    spliceable = (_SPLICE and request.method != "HEAD" and _plain_tcp(downstream) and not response.chunked
                  and not response.compression)
    taken = _take_over(upstream) if spliceable else None
    if taken is not None:
        head, source, remaining = taken
        if head:
            await response.write(head)
            on_bytes(len(head))
        try:
            if remaining:
                await _flushed(downstream, writer)
                await _splice(source, _fileno(downstream), remaining, on_bytes)
            await response.write_eof()
            upstream.close()  # its parser never saw the rest of the body: not reusable
            return
        except _Unsupported:
            upstream.connection.transport.resume_reading()  # nothing was taken off the socket
    async for chunk, _ in upstream.content.iter_chunks():  # each buffered piece as received, unjoined
        await response.write(chunk)
        on_bytes(len(chunk))
    await response.write_eof()


def _plain_tcp(transport: asyncio.BaseTransport | None) -> bool:
    return (transport is not None and not transport.is_closing()
            and transport.get_extra_info("sslcontext") is None and transport.get_extra_info("socket") is not None)


def _fileno(transport: asyncio.BaseTransport) -> int:
    return transport.get_extra_info("socket").fileno()


def _take_over(upstream: aiohttp.ClientResponse) -> tuple[bytes, int, int] | None:
    """(the body bytes aiohttp holds, the socket's fd, the bytes still to come on it), with aiohttp
    no longer reading that socket; None when splicing it could differ from streaming.

    Runs without an await, so nothing is received between the checks and the pause."""
    connection, content, length = upstream.connection, upstream.content, upstream.content_length
    if (connection is None or not _plain_tcp(connection.transport) or length is None
            or "Transfer-Encoding" in upstream.headers or content.exception() is not None):
        return None
    _, high_water = content.get_read_buffer_limits()
    received = content.total_bytes
    if received > high_water or received > length:
        return None  # the parser may have paused on a tail of its own
    head = content.read_nowait() if received else b""
    if len(head) != received:
        return None  # cannot happen while nothing else reads this reply; refuse rather than guess
    connection.transport.pause_reading()  # the rest stays in the socket, for splice
    return head, _fileno(connection.transport), length - received


async def _flushed(transport: asyncio.WriteTransport, writer: AbstractStreamWriter) -> None:
    """Wait until the transport has sent all written to it (headers, the body's head): spliced
    bytes go to the socket directly and must come after those."""
    if not transport.get_write_buffer_size():
        return
    low, high = transport.get_write_buffer_limits()
    transport.set_write_buffer_limits(high=0)  # the writer stays paused until the buffer is empty
    try:
        await writer.drain()
    finally:
        transport.set_write_buffer_limits(high=high, low=low)


async def _splice(source: int, target: int, count: int, on_bytes: OnBytes) -> None:
    """Move `count` bytes from socket `source` to socket `target` through a pipe."""
    loop = asyncio.get_running_loop()
    # Duplicates: the event loop refuses readers and writers on a transport's own fd, and these
    # stay valid should a transport close meanwhile (the next splice then fails instead).
    source, target = os.dup(source), os.dup(target)
    pipe_out, pipe_in = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            fcntl.fcntl(pipe_in, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # the default size works, in smaller steps
        capacity = fcntl.fcntl(pipe_in, fcntl.F_GETPIPE_SZ)
        in_pipe = moved = 0
        while count or in_pipe:
            progressed = False
            if count and in_pipe < capacity:
                try:
                    n = os.splice(source, pipe_in, min(count, capacity - in_pipe), flags=_FLAGS)
                except BlockingIOError:
                    pass
                except OSError as exc:
                    if not moved and exc.errno in _UNSUPPORTED:
                        raise _Unsupported() from exc
                    raise aiohttp.ClientPayloadError(f"Response payload is not completed: {exc}") from exc
                else:
                    if not n:
                        raise aiohttp.ClientPayloadError("Response payload is not completed: the connection closed")
                    count -= n
                    in_pipe += n
                    moved += n
                    progressed = True
            if in_pipe:
                try:
                    n = os.splice(pipe_out, target, in_pipe, flags=_FLAGS)
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise aiohttp.ClientConnectionResetError("Cannot write to closing transport") from exc
                else:
                    in_pipe -= n
                    on_bytes(n)
                    progressed = True
            if not progressed:
                # Nothing moved: with bytes in the pipe the client is the one behind (and the
                # pipe may be full, which also refuses input); else the sidecar is.
                await _ready(loop, None if in_pipe else source, target if in_pipe else None)
    finally:
        for fd in (source, target, pipe_out, pipe_in):
            os.close(fd)


async def _ready(loop: asyncio.AbstractEventLoop, readable: int | None, writable: int | None) -> None:
    """Until `readable` can be read or `writable` written (whichever first)."""
    waiter = loop.create_future()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    if readable is not None:
        loop.add_reader(readable, wake)
    if writable is not None:
        loop.add_writer(writable, wake)
    try:
        await waiter
    finally:
        if readable is not None:
            loop.remove_reader(readable)
        if writable is not None:
            loop.remove_writer(writable)
