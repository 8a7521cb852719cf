"""Write a file so that readers see either the old content or the new, never a half-written one."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to a temp file in ``path``'s folder, then ``os.replace`` it over ``path``.

    The temp file lives in the same folder because ``os.replace`` is only atomic within one file
    system.  ``fsync`` makes the new content durable before the rename, so a power cut cannot
    leave an empty file where the old one was (the rename alone only orders the metadata).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        # A failed write (disk full, Ctrl-C) must not leave temp files behind in the research folder.
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str, *, fsync: bool = True) -> None:
    """``atomic_write_bytes`` for UTF-8 text, written exactly as given (no newline translation)."""
    atomic_write_bytes(path, text.encode("utf-8", "surrogateescape"), fsync=fsync)
