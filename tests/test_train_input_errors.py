"""train.py on bad data input: exit code 2 and one line naming the file, no traceback."""
import os
import shutil

from helpers import run_cli
from train_fixtures import make_dataset, write_config


def test_missing_frame_is_a_clean_error(tmp_path):
    root, train_list, val_list = make_dataset(str(tmp_path / "data"), videos_per_class=3)
    with open(train_list) as f:
        first_video = f.readline().split()[0]
    shutil.rmtree(os.path.join(root, first_video))  # listed, but its frames are gone
    cfg = write_config(str(tmp_path / "c.yaml"), root, train_list, val_list,
                       str(tmp_path / "run"), **{"data.num_workers": 0, "train.batch_size": 2,
                                                 "data.train_crop": "multiscale_corner"})
    proc = run_cli(["dist_train/train.py", "-c", cfg], check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("train.py: error:")]
    assert len(error_lines) == 1 and first_video in error_lines[0] and "missing" in error_lines[0]


def test_random_crop_larger_than_frames_is_a_clean_error(tmp_path):
    root, train_list, val_list = make_dataset(str(tmp_path / "data"), videos_per_class=3)
    cfg = write_config(str(tmp_path / "c.yaml"), root, train_list, val_list,
                       str(tmp_path / "run"), **{"data.num_workers": 0, "train.batch_size": 2,
                                                 "data.train_crop": "random",
                                                 "data.crop_size": 1000})
    proc = run_cli(["dist_train/train.py", "-c", cfg], check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "train.py: error:" in proc.stderr
    assert "1000" in proc.stderr
