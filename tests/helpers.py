"""Shared test utilities: running CLIs and multi-process jobs through paddle.distributed.launch."""
from __future__ import annotations

import contextlib
import glob
import os
import signal
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(threads: int = 1, **extra: str) -> dict[str, str]:
    """Environment for child processes: one compute thread each, quiet Paddle."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                "PYTHONDONTWRITEBYTECODE": "1",
                "GLOG_minloglevel": "2", "FLAGS_call_stack_level": "0"})
    env.update(extra)
    return env


def run_in_own_group(cmd: list[str], timeout: float, cwd: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """subprocess.run in a new session; on timeout the whole process group is killed, so no
    trainer rank or loader worker outlives a hung test."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                          env=env, start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise AssertionError(f"timed out after {timeout} s (process group killed): {cmd}\n"
                                 f"--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-3000:]}")
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # leftovers of a finished command, if any
            except ProcessLookupError:
                pass
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@contextlib.contextmanager
def popen_in_own_group(cmd: list[str], cwd: str | None = None, env: dict[str, str] | None = None):
    """``subprocess.Popen`` (stdout and stderr merged, text) in a new session, for tests that
    signal or watch a running job; leaving the block (normally, on a failed assertion or a
    timeout) SIGKILLs the whole process group, so no launcher, rank or loader worker outlives
    the test."""
    proc = subprocess.Popen(cmd, cwd=cwd or REPO, env=env or child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()


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
    proc = run_in_own_group([python, *args], timeout, cwd or REPO, env or child_env())
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
    proc = run_in_own_group(cmd, timeout, REPO, env or child_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"launch failed ({proc.returncode}): {cmd}\n--- launcher\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n{worker_logs(log_dir)}")
    return proc
