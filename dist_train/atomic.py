"""Atomic file writes: the one implementation every layer uses (it imports nothing of ours).

A file is written under a unique temporary name in its own directory, flushed and fsynced, then
renamed over the target, so a reader sees either the old complete file or the new complete one,
never a partial write. Text is written as UTF-8 with its newlines unchanged ("\\n" stays "\\n").
"""
from __future__ import annotations

import contextlib
import os
import secrets

TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"


def fsync_dir(path: str) -> None:
    """Make a rename or a new entry in directory ``path`` durable (POSIX)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_fsynced(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` (created or truncated in place), flush and fsync it."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_open(path: str):
    """``with atomic_open(path) as f: f.write(...)``: a binary file under a temporary name beside
    ``path`` (directories created), flushed, fsynced and renamed over ``path`` when the block
    ends; on an error the temporary file is removed and ``path`` is left as it was."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # O_EXCL on a random name: concurrent writers never share a temporary file. Mode 0o666
    # minus the umask, like a plain open() (mkstemp would make it 0600).
    tmp = os.path.join(directory, f"{TEMP_PREFIX}{os.path.basename(path)}.{os.getpid()}."
                                  f"{secrets.token_hex(4)}{TEMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.errno and not error.filename:
            # f.write names no file: name the target (a full disk's message needs it)
            raise OSError(error.errno, error.strerror, path) from error
        raise


def is_temporary(name: str, target_prefix: str = "") -> bool:
    """True for a temporary file name of ``atomic_open`` (of a target starting with
    ``target_prefix``): what an interrupted write leaves behind."""
    return name.startswith(TEMP_PREFIX + target_prefix) and name.endswith(TEMP_SUFFIX)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` (directories created), then rename."""
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: str, text: str) -> None:
    """``atomic_write_bytes`` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))
