"""Every data tool and scripts/model_info.py under the error policy (issue 18): a missing input
path and an unwritable output end in one '<tool>: error:' line naming the path, exit code 2,
no traceback; argparse usage errors keep argparse's format. Paddle's "No ccache found" import
warning is gone; a warning from our own code still prints."""
import os

import pytest

from helpers import REPO, child_env, run_cli


def one_error(proc, tool, *names):
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in output.splitlines() if line.startswith(f"{tool}: error:")]
    assert len(lines) == 1, output[-3000:]
    for name in names:
        assert name in lines[0], (name, lines[0])


@pytest.fixture
def blocked(tmp_path):
    """An output path below a regular file: unwritable even for root."""
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    return str(blocker / "out")


def tool_cases(tmp_path, blocked):
    missing = str(tmp_path / "missing")
    frames = tmp_path / "frames"
    (frames / "A" / "v1").mkdir(parents=True)
    listed = tmp_path / "list.txt"
    listed.write_text("A/v1 3 0\n")
    videos = tmp_path / "videos"
    (videos / "A").mkdir(parents=True)
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not a checkpoint")
    return {
        "build_lists.py": ([["--frames", missing, "--splits", str(tmp_path), "--out", str(tmp_path)],
                            ["--frames", str(frames), "--splits", str(tmp_path), "--out", blocked]]),
        "extract_frames.py": ([["--src", missing, "--dst", str(tmp_path / "dst")],
                               ["--src", str(videos), "--dst", blocked]]),
        "pack_clips.py": ([["--src", missing, "--out", str(tmp_path / "store")],
                           ["--src", str(frames), "--out", blocked]]),
        "prepare_jpeg_store.py": ([["--src", missing, "--out", str(tmp_path / "store")],
                                   ["--src", str(videos), "--out", blocked]]),
        "verify_dataset.py": ([["--frames", missing, "--list", str(listed)],
                               ["--frames", str(frames), "--list", str(tmp_path / "nolist.txt")]]),
        "make_synthetic.py": ([None, ["--out", blocked, "--videos-per-class", "6"]]),
        "convert_pretrained.py": ([["--src", missing, "--dst", str(tmp_path / "w.pdparams"),
                                    "--model", "resnet-10"],
                                   ["--src", str(weights), "--dst", blocked + "/w.pdparams",
                                    "--model", "resnet-10"]]),
    }


@pytest.mark.parametrize("tool", ["build_lists.py", "extract_frames.py", "pack_clips.py",
                                  "prepare_jpeg_store.py", "verify_dataset.py", "make_synthetic.py",
                                  "convert_pretrained.py"])
def test_data_tool_missing_input_and_unwritable_output(tmp_path, blocked, tool):
    missing_args, unwritable_args = tool_cases(tmp_path, blocked)[tool]
    if missing_args is not None:  # (make_synthetic reads nothing)
        proc = run_cli([os.path.join("data_tools", tool), *missing_args], check=False)
        one_error(proc, tool, missing_args[missing_args.index(next(a for a in missing_args
                                                                    if "missing" in a))])
    proc = run_cli([os.path.join("data_tools", tool), *unwritable_args], check=False)
    # verify_dataset writes nothing: its second input (a list) is missing instead
    one_error(proc, tool, "nolist.txt" if tool == "verify_dataset.py" else "a_file")


def test_model_info_usage_error_keeps_argparse_format():
    proc = run_cli(["scripts/model_info.py", "--model", "no-such-net"], check=False)
    assert proc.returncode == 2 and "usage:" in proc.stderr and "Traceback" not in proc.stderr


def test_no_ccache_warning_but_our_warnings_still_print():
    code = ("import dist_train, paddle, warnings\n"
            "warnings.warn('dist_train test warning')\n")
    proc = run_cli(["-c", code], check=False)
    assert proc.returncode == 0, proc.stderr
    assert "ccache" not in proc.stderr and "dist_train test warning" in proc.stderr
    # the launcher process imports Paddle without dist_train: launch.sh sets PYTHONWARNINGS
    env = child_env(PYTHONWARNINGS="ignore:No ccache found")
    proc = run_cli(["-c", "import paddle.distributed.launch, warnings; warnings.warn('real one')"],
                   check=False, env=env)
    assert "ccache" not in proc.stderr and "real one" in proc.stderr
    with open(os.path.join(REPO, "launch.sh")) as f:
        assert 'PYTHONWARNINGS="ignore:No ccache found' in f.read()
