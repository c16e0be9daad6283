"""Preemption: SIGTERM to a trainer's process group sets the flag and spares its loader
worker; a SIGKILLed trainer takes its worker with it (prctl and the watchdog fallback)."""
import os
import signal
import subprocess
import time

import pytest

from dist_train.training import preempt
from helpers import PYTHON, REPO
from helpers import child_env

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _running(pid):
    """Alive and not a zombie (an exited worker re-parented to a non-reaping init stays Z)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _cleanup(proc, worker):
    """Kill what this test started (the probe and its worker), by pid."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if _running(worker):
        os.kill(worker, signal.SIGKILL)


def _read_int(path):
    return int(path.read_text()) if path.exists() else None


@pytest.mark.parametrize("mode", ["prctl", "watchdog"])
def test_sigterm_spares_worker_and_parent_death_kills_it(tmp_path, mode):
    proc, worker = _start_probe(tmp_path, mode)
    try:
        assert worker != proc.pid and _running(worker)
        os.killpg(proc.pid, signal.SIGTERM)  # like the launcher: the whole process group
        _wait_for(lambda: (tmp_path / "flag").exists(), 10, "the stop flag")
        assert _read_int(tmp_path / "flag") == signal.SIGTERM
        seen = _read_int(tmp_path / "after_flag") or 0
        _wait_for(lambda: (_read_int(tmp_path / "after_flag") or 0) >= seen + 5, 10,
                  "batches after SIGTERM")  # the worker survived and still serves
        assert proc.poll() is None and _running(worker)
        (tmp_path / "slow").write_text("")  # keep the worker busy inside __getitem__
        _wait_for(lambda: (tmp_path / "busy").exists(), 30, "the worker inside a slow item")
        proc.kill()
        proc.wait(timeout=10)
        killed_at = time.monotonic()
        # promptly, not when its 30 s item ends (15 s: room for a loaded machine)
        _wait_for(lambda: not _running(worker), 15, f"worker {worker} to exit after its parent died")
        assert time.monotonic() - killed_at < 15
    finally:
        _cleanup(proc, worker)


def _start_probe(tmp_path, mode):
    proc = subprocess.Popen([PYTHON, "tests/preempt_probe.py", str(tmp_path), mode], cwd=REPO,
                            env=child_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _wait_for(lambda: (tmp_path / "worker_pid").exists() or proc.poll() is not None, 120,
              "the first batch")
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    return proc, _read_int(tmp_path / "worker_pid")


@pytest.mark.parametrize("scenario", ["sigterm", "parent_killed"])
def test_unprotected_worker_negative_control(tmp_path, scenario):
    """Without worker_init_fn the same probe shows both problems the module fixes."""
    proc, worker = _start_probe(tmp_path, "none")
    try:
        if scenario == "sigterm":
            os.killpg(proc.pid, signal.SIGTERM)
            _wait_for(lambda: not _running(worker), 5, "the unprotected worker to die of SIGTERM")
        else:
            (tmp_path / "slow").write_text("")
            _wait_for(lambda: (tmp_path / "busy").exists(), 30, "the worker inside a slow item")
            proc.kill()
            proc.wait(timeout=10)
            time.sleep(3)
            assert _running(worker)  # busy and orphaned: it would keep running for ~30 s
    finally:
        _cleanup(proc, worker)


def test_flag_and_collective_agreement_in_one_process():
    preempt.reset()
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        preempt.install_handlers()
        assert not preempt.stop_requested() and not preempt.agree_to_stop()
        os.kill(os.getpid(), signal.SIGTERM)
        _wait_for(preempt.stop_requested, 2, "the handler")
        assert preempt.requested_signal() == signal.SIGTERM and preempt.agree_to_stop()
        preempt.reset()
        os.kill(os.getpid(), signal.SIGINT)  # first Ctrl-C: flag; second: KeyboardInterrupt
        _wait_for(preempt.stop_requested, 2, "the handler")
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    finally:
        preempt.reset()
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert preempt.PREEMPTED_EXIT_CODE == 75
