"""Messages between the pytest process and its worker processes, over a Unix socket.

A message is a JSON header (a mapping) and an optional binary blob (pickled fixtures), each
preceded by its length.  Nothing a handler prints can reach the socket: the worker's stdout
and stderr go to a log file.  Standard library only: the worker imports this before the handler.

The encoder and decoder are made when this module is imported, before any handler's module:
a warm worker runs many modules' seeds in one interpreter, and one that replaces
``json.dumps`` or ``json.loads`` (a NumPy-aware ``dumps``, a call counter) would otherwise
change every later message of the worker, or break them (the seed then read as a lost worker).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .fastjson import Encoder

__all__ = ["WireError", "recv", "recv_with_fds", "send", "send_with_fds"]

_LENGTHS = struct.Struct("!II")
#: a header this large is a protocol error, not a message (the outcome of one seed is far smaller)
MAX_HEADER = 1 << 30
# default=repr: a stray non-JSON value in a task or an outcome is shown, never a crash
_encode = Encoder(default=repr).encode
# The decoder's scanner (C, where there is one) is made here too: JSONDecoder.decode would look
# up raw_decode on the class at each call, which a module may have replaced.
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _decode(text: str) -> Any:
    """One JSON document with nothing after it (a frame holds exactly one, no spaces around)."""
    try:
        value, end = _scan(text, 0)
    except StopIteration as exc:
        raise ValueError(f"expecting a value at character {exc.value}") from None
    if end != len(text):
        raise ValueError(f"extra data at character {end}")
    return value


class WireError(OSError):
    """The peer sent something that is not a message (or vanished in the middle of one)."""


def _frame(header: Mapping[str, Any], blob: bytes) -> bytes:
    data = _encode(header).encode("utf-8")
    return _LENGTHS.pack(len(data), len(blob)) + data + blob


def send(sock: socket.socket, header: Mapping[str, Any], blob: bytes = b"") -> None:
    sock.sendall(_frame(header, blob))


def send_with_fds(sock: socket.socket, header: Mapping[str, Any], fds: Sequence[int]) -> None:
    """Send a message with file descriptors attached (to its first byte)."""
    frame = _frame(header, b"")
    sent = socket.send_fds(sock, [frame], list(fds))
    if sent < len(frame):
        sock.sendall(frame[sent:])


def _read_exact(sock: socket.socket, size: int, deadline: float | None, first: bool = False) -> bytes | None:
    """``size`` bytes; None at end of stream before the first byte of a message."""
    buf = bytearray()
    while len(buf) < size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply in time")
            sock.settimeout(left)
        try:
            chunk = sock.recv(min(size - len(buf), 1 << 20))
        except TimeoutError:
            raise TimeoutError("no reply in time") from None
        finally:
            if deadline is not None:
                sock.settimeout(None)
        if not chunk:
            if first and not buf:
                return None
            raise WireError("the peer closed the connection in the middle of a message")
        buf += chunk
    return bytes(buf)


def recv(sock: socket.socket, timeout: float | None = None) -> tuple[dict[str, Any], bytes] | None:
    """The next message, or None when the peer closed the connection (it exited or died).
    Raises :class:`TimeoutError` when ``timeout`` seconds pass first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    head = _read_exact(sock, _LENGTHS.size, deadline, first=True)
    if head is None:
        return None
    size, blob_size = _LENGTHS.unpack(head)
    return _body(sock, size, blob_size, deadline)


def _body(
    sock: socket.socket, size: int, blob_size: int, deadline: float | None
) -> tuple[dict[str, Any], bytes]:
    if size > MAX_HEADER or blob_size > MAX_HEADER * 4:
        raise WireError(f"not a message: a header of {size} bytes")
    data = _read_exact(sock, size, deadline) or b""
    blob = (_read_exact(sock, blob_size, deadline) or b"") if blob_size else b""
    try:
        header = _decode(data.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError is one too
        raise WireError(f"not a message: {exc}") from None
    if not isinstance(header, dict):
        raise WireError("not a message: the header is not a mapping")
    return header, blob


def recv_with_fds(sock: socket.socket, max_fds: int = 4) -> tuple[dict[str, Any], list[int]] | None:
    """:func:`recv` for a message sent with :func:`send_with_fds`; None at end of stream."""
    data, fds, _flags, _addr = socket.recv_fds(sock, _LENGTHS.size, max_fds)
    if not data:
        for fd in fds:
            _close(fd)
        return None
    if len(data) < _LENGTHS.size:
        data += _read_exact(sock, _LENGTHS.size - len(data), None) or b""
    size, blob_size = _LENGTHS.unpack(data)
    header, _blob = _body(sock, size, blob_size, None)
    return header, list(fds)


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
