"""Lists for a user's own folders: class names with spaces, a train/val split that keeps every
source group (UCF-101 gXX, Kinetics youtube_id, a user's regex) in one split, the same on
every run."""
import os
import re
import shutil

import numpy as np
import pytest

from dist_train.data.lists import DataError, read_class_names, read_list
from dist_train.data.prepare.extract import extract_all
from dist_train.data.prepare.own_folders import build_folder_lists, source_group, split_by_group

from helpers import child_env, run_cli
from kinetics_fixtures import clip_frames, write_video

# class folder -> clip names (no extension): UCF-like groups, Kinetics-like ids (two or three
# clips of one YouTube video), camera takes for --group-regex
CLIPS = {
    "passing American football (in game)":
        [f"v_Pass_g{g:02d}_c{c:02d}" for g in range(1, 7) for c in range(1, 3)],
    "jumping 'high' (in place)":
        [f"{vid}_{10 * k:06d}_{10 * k + 10:06d}" for vid in ("ab-cd_ef123", "x_y_z-00001", "QQQ-qqq_777",
                                                            "m_n-o_p_q_r") for k in range(3)],
    "Archery": [f"v_Archery_g{g:02d}_c01" for g in range(1, 7)] + ["cam1_take9"],
}
CAMERA_CLIPS = [f"cam{cam}_take{take}" for cam in range(1, 6) for take in range(1, 4)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("own") / "videos"
    rng = np.random.default_rng(4)
    for class_name, names in CLIPS.items():
        for name in names:
            write_video(str(root / class_name / f"{name}.mp4"),
                        clip_frames(rng, "passing American football (in game)", 12))
    return str(root)


def _groups(entries):
    """Independent grouping of list paths: gXX, the id before the two time fields, or the clip."""
    groups = set()
    for e in entries:
        name = os.path.splitext(e.video.rpartition("/")[2])[0]
        m = re.search(r"_g(\d\d)_c\d\d$", name) or re.match(r"^(.*)_\d{6}_\d{6}$", name)
        groups.add(m.group(1) if m else e.video)
    return groups


def test_split_keeps_sources_together_and_names_keep_spaces(videos, tmp_path):
    proc = run_cli(["data_tools/build_lists.py", "--dataset", "folders", "--videos", videos,
                    "--out", str(tmp_path), "--name", "mine", "--val-fraction", "0.3"])
    classes = read_class_names(str(tmp_path / "classes.txt"))
    assert classes == sorted(CLIPS)
    train, val = (read_list(str(tmp_path / f"mine_{s}.txt")) for s in ("train", "val"))
    assert not _groups(train) & _groups(val)
    assert len(train) + len(val) == sum(map(len, CLIPS.values()))
    for label, name in enumerate(classes):
        n_train = sum(e.label == label for e in train)
        n_val = sum(e.label == label for e in val)
        assert n_train > 0 and n_val > 0, (name, n_train, n_val)
        assert all(e.video.startswith(name + "/") and e.num_frames == 12
                   for e in train + val if e.label == label)
    # UCF groups are one source across classes, as in the official splits
    assert _groups([e for e in val if "_g" in e.video]) <= {f"{g:02d}" for g in range(1, 7)}
    assert "-o data.video_ext= " in proc.stdout


def test_same_split_on_every_run(videos, tmp_path):
    copy = str(tmp_path / "copy")
    for class_name in reversed(sorted(CLIPS)):  # another creation order
        os.makedirs(os.path.join(copy, class_name))
        for name in reversed(CLIPS[class_name]):
            shutil.copy(os.path.join(videos, class_name, f"{name}.mp4"), os.path.join(copy, class_name))
    outputs = []
    for root, hash_seed in ((videos, "1"), (copy, "2"), (videos, "3")):
        out = str(tmp_path / f"out{hash_seed}")
        run_cli(["data_tools/build_lists.py", "--dataset", "folders", "--videos", root,
                 "--out", out], env=child_env(PYTHONHASHSEED=hash_seed))
        outputs.append([open(os.path.join(out, f"folders_{s}.txt")).read() for s in ("train", "val")])
    assert outputs[0] == outputs[1] == outputs[2]
    other_seed = build_folder_lists(videos, val_fraction=0.2, seed=1)
    assert [e.video for e in other_seed.lists["val"]] != \
        [line.rsplit(" ", 2)[0] for line in outputs[0][1].splitlines()]


def test_user_regex_groups_and_frame_folders(tmp_path):
    rng = np.random.default_rng(5)
    videos = tmp_path / "videos"
    for k, name in enumerate(CAMERA_CLIPS):
        write_video(str(videos / ("walk" if k % 2 else "run fast") / f"{name}.mp4"),
                    clip_frames(rng, "passing American football (in game)", 8 + k % 3))
    frames = str(tmp_path / "frames")
    assert extract_all(str(videos), frames, ext=".mp4")["failed_count"] == 0
    generated = build_folder_lists(frames, kind="frames", val_fraction=0.3,
                                   group_regex=r"^(cam\d+)_")
    train, val = generated.lists["train"], generated.lists["val"]
    cams = [{re.match(r".*/(cam\d+)_", e.video).group(1) for e in entries} for entries in (train, val)]
    assert cams[0] and cams[1] and not cams[0] & cams[1]
    assert all(e.num_frames == 8 + CAMERA_CLIPS.index(e.video.rpartition("/")[2]) % 3
               for e in train + val)
    assert generated.classes == ["run fast", "walk"]
    with pytest.raises(DataError, match=r"run fast/cam1_take1: --group-regex '\^\(take\\d\)_' does not match"):
        build_folder_lists(frames, kind="frames", group_regex=r"^(take\d)_")


def test_source_group_rules():
    assert source_group("A", "v_A_g07_c03") == source_group("B", "v_B_g07_c01") == "ucf:g07"
    assert source_group("A", "ab_c-d_000010_000020") == "youtube:ab_c-d"
    assert source_group("A", "holiday") == "clip:A/holiday"
    assert source_group("A", "v_A_g07_c03", re.compile("v_(A)")) == "re:A"


def test_a_class_from_one_source_stays_in_training():
    clips = [("A", f"A/{k}", "one source") for k in range(5)] + \
            [("B", f"B/{k}", f"b{k}") for k in range(5)]
    val = split_by_group(clips, val_fraction=0.4)
    assert "one source" not in val
    assert len(val) == 2 and val <= {f"b{k}" for k in range(5)}
