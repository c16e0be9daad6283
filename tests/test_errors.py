"""dist_train/errors.py, the policy every tool uses: which exceptions are input problems (one
'<tool>: error:' line, exit 2) and which are bugs (traceback, exit 1)."""
import errno

import pytest

from dist_train import errors


def run(exc, capsys, rank=0):
    def main(argv):
        raise exc

    code = errors.run_tool("tool.py", main, rank=lambda: rank)
    return code, capsys.readouterr().err


def test_input_error_is_one_line_exit_2(capsys):
    code, err = run(errors.InputError("/data/list.txt:3: label 9 is outside 0..3"), capsys)
    assert code == 2 and err == "tool.py: error: /data/list.txt:3: label 9 is outside 0..3\n"


def test_a_bug_propagates_with_its_type():
    with pytest.raises(KeyError):
        errors.run_tool("tool.py", lambda argv: {}["missing"])


def test_disk_full_names_the_path_and_the_free_space(tmp_path, capsys):
    code, err = run(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.bin")),
                    capsys)
    assert code == 2 and str(tmp_path / "x.bin") in err and "MB free in" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("text, hint", [
    ("ResourceExhaustedError: Out of memory error on GPU 0. Cannot allocate 2.1GB", "train.accum_steps"),
    ("DataLoader worker (pid 12) is killed by signal: Bus error. insufficient shared memory (shm)",
     "--shm-size")])
def test_gpu_memory_and_shared_memory_say_what_to_do(capsys, text, hint):
    code, err = run(RuntimeError(text), capsys)
    assert code == 2 and hint in err and err.startswith("tool.py: error: ")


def test_an_error_raised_on_every_rank_is_printed_by_rank_0_only(capsys):
    exc = errors.InputError("config.yaml: unknown key")
    exc.on_every_rank = True
    assert run(exc, capsys, rank=1)[1].startswith("tool.py: stopping")
    assert run(exc, capsys, rank=0)[1].startswith("tool.py: error: config.yaml")


def test_injected_faults(monkeypatch, tmp_path):
    monkeypatch.setenv(errors.FAULT_ENV, "a_point:enospc,other")
    with pytest.raises(OSError) as caught:
        errors.inject_fault("a_point", str(tmp_path / "f"))
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "f")
    with pytest.raises(errors.InjectedFault):
        errors.inject_fault("other")
    errors.inject_fault("not_named")  # nothing happens
