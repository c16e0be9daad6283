"""The error policy of every tool: an input problem is one line and exit code 2, a bug keeps its
traceback and exits 1.

An *input problem* is something the user fixes (config, list, frames, video, store, checkpoint,
weights, run directory, disk space, device choice, GPU memory, /dev/shm): the message names the
file and line, key or path and says what to do, and ``launch.sh`` does not retry it (a retry would
fail the same way). Everything else is a bug: its traceback is the useful part, exit code 1, and
``launch.sh`` may retry it.

Entry points call ``run_tool(tool, main, argv)``; library code raises ``InputError`` (or one of its
subclasses: ConfigError, DataError, BadSampleError, CheckpointError, ...) and turns a failed write
into one with ``write_error``. An error that every rank of a launched job raises alike (after a
collective) carries ``on_every_rank = True``: rank 0 alone prints it, so it is named once. Also
here: the test hook ``inject_fault`` (DIST_TRAIN_FAULT). Imports nothing of ours, so every layer
uses it.
"""
from __future__ import annotations

import errno
import os
import shutil
import sys

INPUT_ERROR_EXIT, BUG_EXIT = 2, 1

# OSErrors that name a path and say something about the machine, not about our code.
_PATH_ERRNOS = {
    errno.ENOSPC: "free some space or choose another location",
    errno.EDQUOT: "the disk quota is exhausted: free some space or choose another location",
    errno.EROFS: "the file system is read-only: choose a writable location",
    errno.EACCES: "check the permissions or choose another location",
    errno.EPERM: "check the permissions or choose another location",
    errno.ENOTDIR: "a part of the path is a file, not a directory: fix the path",
    errno.ENOENT: "check the path",
    errno.EISDIR: "the path is a directory where a file is expected: fix the path",
}
_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# Failed writes that no other item of a batch tool would escape: stop the run, not the item.
OUTPUT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
_GPU_MEMORY_HINT = ("out of memory (GPU, or host RAM): lower the per-GPU batch (train.batch_size, "
                    "or more GPUs) or raise train.accum_steps")
_SHM_HINT = ("shared memory (/dev/shm) is full: give the container more (docker run --shm-size=8g) "
             "or use fewer loader workers (data.num_workers)")


class InputError(Exception):
    """Bad input: the message names the file and line, key or path and what to do (exit 2)."""


def free_space_text(path: str) -> str:
    """'12.3 MB free in /mnt' for the nearest existing ancestor of ``path`` ('' if unknown)."""
    probe = os.path.abspath(path or ".")
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return ""
    return f"{free / 1e6:.1f} MB free in {probe}"


def write_error(exc: OSError, path: str | None = None, what: str = "writing") -> InputError:
    """An InputError for an OSError raised while writing ``path``: the path, the reason, the
    free space (disk full, quota) and what to do. Raise it ``from exc``."""
    target = getattr(exc, "filename", None) or path or "?"
    reason = exc.strerror or str(exc)
    hint = _PATH_ERRNOS.get(exc.errno, "check the path and the disk")
    space = free_space_text(path or target) if exc.errno in _SPACE_ERRNOS or path else ""
    return InputError(f"{what} {target}: {reason}" + (f" ({space})" if space else "") + f"; {hint}")


def require_path(path: str, what: str, kind: str = "dir") -> str:
    """``path`` itself when it exists as a ``kind`` ('dir', 'file' or 'any'), else an InputError
    naming ``what`` (e.g. '--src (the video root)') and the path."""
    ok = {"dir": os.path.isdir, "file": os.path.isfile, "any": os.path.exists}[kind](path)
    if not ok:
        exists = os.path.exists(path)
        raise InputError(f"{what}: {path} " + (f"is not a {'directory' if kind == 'dir' else 'file'}"
                                               if exists else "does not exist") + "; check the path")
    return path


def ensure_writable_dir(path: str, what: str) -> str:
    """Create ``path`` if needed and prove it takes a file (a probe written and removed), so a
    batch tool fails before its first item, with one named line, on an unwritable output."""
    probe = os.path.join(path, f".write-probe-{os.getpid()}")
    try:
        os.makedirs(path, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"x")
        os.remove(probe)
    except OSError as exc:
        raise write_error(exc, path, f"{what}: writing") from exc
    return path


def _is_gpu_oom(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, MemoryError) or "ResourceExhausted" in text or \
        ("Out of memory" in text and ("GPU" in text or "CUDA" in text or "gpu" in text))


def _is_shm_full(exc: BaseException) -> bool:
    text = str(exc)
    return "insufficient shared memory" in text or "/dev/shm" in text and "No space" in text


def input_message(exc: BaseException) -> str | None:
    """The one-line message of an input problem, or None when ``exc`` is a bug."""
    if isinstance(exc, InputError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in _PATH_ERRNOS and getattr(exc, "filename", None):
        return str(write_error(exc, None, "cannot use"))
    if _is_shm_full(exc):
        return _SHM_HINT
    if _is_gpu_oom(exc):
        return _GPU_MEMORY_HINT
    return None


def exit_code(exc: BaseException) -> int:
    """2 for an input problem, 1 for a bug."""
    return INPUT_ERROR_EXIT if input_message(exc) is not None else BUG_EXIT


_OPEN_PROGRESS_LINES = set()  # streams on which a progress bar's line is unfinished


def progress_line(stream, unfinished: bool) -> None:
    """A progress bar that rewrites one line says whether it left it unfinished, so an error
    printed meanwhile (run_tool) starts on a line of its own."""
    (_OPEN_PROGRESS_LINES.add if unfinished else _OPEN_PROGRESS_LINES.discard)(stream)


def error_line(tool: str, message: str) -> str:
    return f"{tool}: error: {message}"


def run_tool(tool: str, main, argv=None, rank=None, on_input_error=None) -> int:
    """Call ``main(argv)``; an input problem prints one ``<tool>: error: ...`` line on stderr and
    returns 2; a bug propagates (traceback, exit 1). Argparse's own usage errors are untouched.

    Under a launcher (``rank()`` returns this process's rank): an error raised on every rank
    alike (marked ``on_every_rank``, e.g. after a collective) is printed by rank 0 only, so it
    is named once; ``on_input_error(message, printed)`` records it (launch.sh reads that)."""
    try:
        return main(argv)
    except Exception as exc:  # noqa: BLE001 - classified below, re-raised when a bug
        message = input_message(exc)
        if message is None:
            raise
        shared = getattr(exc, "on_every_rank", False)
    this_rank = rank() if rank is not None else 0
    printed = this_rank == 0 or not shared
    for stream in list(_OPEN_PROGRESS_LINES):
        stream.write("\n")
        stream.flush()
        progress_line(stream, False)
    if printed:
        print(error_line(tool, message), file=sys.stderr, flush=True)
    else:
        print(f"{tool}: stopping on the input error that rank 0 reports", file=sys.stderr,
              flush=True)
    if on_input_error is not None:
        on_input_error(message, printed)
    return INPUT_ERROR_EXIT


# ----------------------------------------------------------------------------- fault injection
FAULT_ENV = "DIST_TRAIN_FAULT"


class InjectedFault(RuntimeError):
    """Raised at a fault point named by DIST_TRAIN_FAULT (tests only): a bug, exit code 1."""


def inject_fault(point: str, path: str | None = None) -> None:
    """TEST HOOK. ``DIST_TRAIN_FAULT=<point>[:<action>][@<rank>]`` (comma-separated for several
    points): at ``point`` raise InjectedFault (no action: an injected bug), SIGKILL this process
    (``kill``), raise an InputError (``input``), or the OSError a full disk (``enospc``) or a
    read-only file system (``erofs``) gives when writing ``path``; ``@R`` limits it to rank R.
    Does nothing when the variable does not name ``point``."""
    for spec in filter(None, os.environ.get(FAULT_ENV, "").split(",")):
        name, _, action = spec.partition(":")
        action, _, rank = action.partition("@")  # "@R": only on the rank R of a launched job
        if name != point or (rank and rank != os.environ.get("PADDLE_TRAINER_ID", "0")):
            continue
        if action == "input":
            raise InputError(f"{path or point}: injected input error ({FAULT_ENV}={spec})")
        if action == "kill":
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        if action in ("enospc", "erofs"):
            code = errno.ENOSPC if action == "enospc" else errno.EROFS
            raise OSError(code, os.strerror(code), path or point)
        raise InjectedFault(f"{FAULT_ENV}={spec}: injected fault at '{point}'")
