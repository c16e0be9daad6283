"""Logging set-up per rank: rank 0 talks to the console and ``train.log``; other ranks write
their own file and show only warnings and errors on the console."""
from __future__ import annotations

import logging
import os
import sys

from dist_train.errors import write_error

LOGGER_NAME = "dist_train"
_said_once: set[str] = set()


class _LogFile(logging.FileHandler):
    """A log file that, when a write fails (disk full, read-only), says so once in one line
    (logging's default prints a traceback for every record) and stops writing."""

    def handleError(self, record):
        error = sys.exc_info()[1]
        if not getattr(self, "_failed", False):
            self._failed = True
            message = write_error(error, self.baseFilename, "writing the log") \
                if isinstance(error, OSError) else error
            sys.stderr.write(f"dist_train: warning: {message}; logging to the console only\n")
        self.setLevel(logging.CRITICAL + 1)


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def setup_logging(run_dir: str | None, rank: int = 0, filename: str = "train.log") -> logging.Logger:
    """Configure the package logger; safe to call again (handlers are replaced)."""
    logger = get_logger()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter(f"%(asctime)s [rank {rank}] %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(sys.stdout if rank == 0 else sys.stderr)
    console.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if run_dir is not None:
        if rank == 0:
            path = os.path.join(run_dir, filename)
        else:
            path = os.path.join(run_dir, "logs", f"rank{rank}_{filename}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        file_handler = _LogFile(path, encoding="utf-8")
        file_handler.setLevel(logging.INFO)
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    return logger


def log_once(key: str, message: str, level: int = logging.WARNING) -> None:
    """Say a fallback (no sync-BN kernel on CPU, AMP ignored on CPU, ...) once per process."""
    if key in _said_once:
        return
    _said_once.add(key)
    get_logger().log(level, message)
