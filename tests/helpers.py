"""Shared test utilities: running CLIs and multi-process jobs through paddle.distributed.launch."""
from __future__ import annotations

import glob
import os
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_env(threads: int = 1, **extra: str) -> dict[str, str]:
    """Environment for child processes: one compute thread each, quiet Paddle."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                "PYTHONDONTWRITEBYTECODE": "1",
                "GLOG_minloglevel": "2", "FLAGS_call_stack_level": "0"})
    env.update(extra)
    return env


def worker_logs(log_dir: str) -> str:
    parts = []
    for path in sorted(glob.glob(os.path.join(log_dir, "workerlog.*"))):
        with open(path, errors="replace") as f:
            parts.append(f"===== {path}\n{f.read()[-6000:]}")
    return "\n".join(parts)


def run_cli(args: list[str], timeout: float = 300, check: bool = True, cwd: str | None = None,
            env: dict[str, str] | None = None, python: str = PYTHON) -> subprocess.CompletedProcess:
    """Run ``python args...`` (this interpreter unless ``python`` names another); on an
    unexpected exit code fail with its output."""
    proc = subprocess.run([python, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or REPO, env=env or test_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"command failed ({proc.returncode}): {python} {args}\n"
                             f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


def launch(script_and_args: list[str], log_dir: str, nproc: int = 2, timeout: float = 300,
           check: bool = True, extra_launch_args: list[str] | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a script under ``python -m paddle.distributed.launch --nproc_per_node N`` on CPU."""
    cmd = [PYTHON, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc),
           "--log_dir", log_dir, "--master", f"127.0.0.1:{free_port()}", *(extra_launch_args or []),
           *script_and_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=env or test_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"launch failed ({proc.returncode}): {cmd}\n--- launcher\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n{worker_logs(log_dir)}")
    return proc
