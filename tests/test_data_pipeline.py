"""Round trip synthetic -> extract -> lists -> reader, damaged videos, split-file quirks, doctor."""
import json
import os
import shutil

import numpy as np
import pytest

from dist_train.data import factory
from dist_train.data.prepare.extract import extract_all
from dist_train.data.lists import (DataError, build_split_lists, read_class_ind, read_list,
                                   write_list)
from dist_train.data.prepare.synthetic import make_synthetic
from dist_train.data.prepare.verify import verify_dataset

from data_helpers import stamped_frame, write_avi, write_frame_folder

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)

JPG = "img_{:05d}.jpg"


def data_cfg(**overrides):
    cfg = {"data.root": None, "data.source": "frames", "data.frame_template": JPG,
           "data.video_ext": ".avi", "data.train_list": None, "data.val_list": None,
           "data.test_list": None, "data.clip_len": 8, "data.crop_size": 32,
           "data.temporal_stride": 1, "data.train_crop": "multiscale_corner",
           "data.scales": [1.0, 0.8408964, 0.7071068, 0.5946036, 0.5], "data.hflip": True,
           "data.eval_short_side": 40, "data.val_clips": 3, "data.test_crops": 1,
           "data.num_workers": 0, "data.skip_bad_samples": False, "train.seed": 0,
           "eval.protocol": "paper"}
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    manifest = make_synthetic(str(root / "syn"), num_classes=4, videos_per_class=8, seed=1,
                              height=48, width=64, min_frames=6, max_frames=20)
    report = extract_all(str(root / "syn" / "UCF-101"), str(root / "frames"), workers=2)
    lists = str(root / "lists")
    train, val, classes, problems = build_split_lists(
        str(root / "frames"), str(root / "syn" / "ucfTrainTestlist"), 1)
    write_list(os.path.join(lists, "train.txt"), train)
    write_list(os.path.join(lists, "val.txt"), val)
    return {"root": root, "manifest": manifest, "report": report, "classes": classes,
            "lists": lists, "problems": problems}


def test_synthetic_layout_and_determinism(synthetic, tmp_path):
    root, manifest = synthetic["root"], synthetic["manifest"]
    split_dir = root / "syn" / "ucfTrainTestlist"
    for name in ("classInd.txt", "trainlist01.txt", "testlist01.txt"):
        raw = (split_dir / name).read_bytes()
        assert raw.count(b"\r\n") == raw.count(b"\n") > 0  # Windows line endings
    assert read_class_ind(str(split_dir / "classInd.txt")) == manifest["classes"]
    names = [v for v in manifest["videos"] if not manifest["videos"][v]["heldout"]]
    assert all(v.split("/")[1].startswith(f"v_{v.split('/')[0]}_g") for v in names)
    assert any(manifest["videos"][v]["frames"] < 16 for v in names)
    heldout = (root / "syn" / "heldout" / "heldout.txt").read_text().split()
    assert len(heldout) == 8 and all(os.path.exists(root / "syn" / "heldout" / p)
                                     for p in heldout[::2])
    again = make_synthetic(str(tmp_path / "again"), num_classes=4, videos_per_class=8, seed=1,
                           height=48, width=64, min_frames=6, max_frames=20)
    assert again["videos"] == manifest["videos"]
    video = names[0] + ".avi"
    assert (tmp_path / "again" / "UCF-101" / video).read_bytes() == \
        (root / "syn" / "UCF-101" / video).read_bytes()


def test_round_trip_labels_and_counts(synthetic):
    root, manifest = synthetic["root"], synthetic["manifest"]
    assert synthetic["report"]["failed_count"] == 0 and not synthetic["problems"]
    train = read_list(os.path.join(synthetic["lists"], "train.txt"))
    val = read_list(os.path.join(synthetic["lists"], "val.txt"))
    assert len(train) == manifest["num_train"] and len(val) == manifest["num_test"]
    assert not {e.video for e in train} & {e.video for e in val}
    for entry in train + val:
        assert synthetic["classes"][entry.label] == entry.video.split("/")[0]
        assert entry.num_frames == manifest["videos"][entry.video]["frames"]
    cfg = data_cfg(**{"data.root": str(root / "frames"),
                      "data.train_list": os.path.join(synthetic["lists"], "train.txt"),
                      "data.val_list": os.path.join(synthetic["lists"], "val.txt")})
    ds = factory.build_train_dataset(cfg)
    for i in range(0, len(ds), 7):
        clip, label = ds[(0, i)]
        assert clip.shape == (3, 8, 32, 32) and label == train[i].label
    for mode in ("val", "test"):
        ev = factory.build_eval_dataset(cfg, mode)
        assert ev.num_videos == len(val) and ev.labels == [e.label for e in val]
        for v in (0, len(val) - 1):
            begin, end = ev.video_clip_ranges[v]
            assert all(ev[i][1:3] == (val[v].label, v) for i in range(begin, end))
        if mode == "val":
            assert len(ev) == 3 * len(val)


def test_prediction_clips_equal_test_dataset_clips(synthetic):
    root = synthetic["root"]
    val = read_list(os.path.join(synthetic["lists"], "val.txt"))
    cfg = data_cfg(**{"data.root": str(root / "syn" / "UCF-101"), "data.source": "video",
                      "data.val_list": os.path.join(synthetic["lists"], "val.txt"),
                      "data.test_crops": 3})
    ev = factory.build_eval_dataset(cfg, "test")
    for v in (0, 5):
        begin, end = ev.video_clip_ranges[v]
        clips = factory.load_video_clips(str(root / "syn" / "UCF-101" / (val[v].video + ".avi")),
                                         clip_len=8, crop_size=32, short_side=40, num_crops=3)
        assert clips.dtype == np.uint8 and len(clips) == end - begin == 3 * -(-val[v].num_frames // 8)
        assert all(np.array_equal(clips[i - begin], ev[i][0]) for i in range(begin, end))
    with pytest.raises(ValueError, match="unknown data.source 'jpeg'"):
        factory.build_train_dataset(data_cfg(**{"data.source": "jpeg"}))


def test_damaged_videos_reported_while_rest_complete(synthetic, tmp_path, capsys):
    from data_tools.extract_frames import main as extract_main
    src = tmp_path / "videos"
    good = sorted((synthetic["root"] / "syn" / "UCF-101" / "MoveUp").iterdir())[:2]
    os.makedirs(src / "MoveUp")
    for p in good:
        shutil.copy(p, src / "MoveUp" / p.name)
    data = good[0].read_bytes()
    bad = src / "Bad"
    noise = np.random.default_rng(0).integers(0, 256, (40, 48, 64, 3), dtype=np.uint8)
    write_avi(str(bad / "v_long.avi"), list(noise))  # frames dominate the header in size
    long_data = (bad / "v_long.avi").read_bytes()
    (bad / "v_long.avi").unlink()
    (bad / "v_zero.avi").write_bytes(b"")
    (bad / "v_trunc.avi").write_bytes(long_data[:len(long_data) * 6 // 10])
    (bad / "v_header.avi").write_bytes(bytes(range(64)) * 2 + data[128:])
    (bad / "v_noise.avi").write_bytes(np.random.default_rng(0).bytes(5000))
    code = extract_main(["--src", str(src), "--dst", str(tmp_path / "fr"), "--workers", "2"])
    assert code == 1
    report = json.loads((tmp_path / "fr" / "extract_report.json").read_text())
    assert report["extracted"] == 2 and report["failed_count"] == 4
    assert {f["video"] for f in report["failed"]} == {f"Bad/{n}" for n in
                                                      ("v_zero", "v_trunc", "v_header", "v_noise")}
    errors = {f["video"]: f["error"] for f in report["failed"]}
    assert "zero-byte" in errors["Bad/v_zero"] and "truncated" in errors["Bad/v_trunc"]
    assert "garbage header" in errors["Bad/v_header"] or "cannot open" in errors["Bad/v_header"]
    assert not any(os.path.exists(tmp_path / "fr" / "Bad" / n) for n in ("v_zero", "v_trunc"))
    assert len(os.listdir(tmp_path / "fr" / "MoveUp" / good[0].stem)) > 0
    assert "4 failed" in capsys.readouterr().out
    again = extract_all(str(src), str(tmp_path / "fr"))
    assert again["skipped_complete"] == 2 and again["failed_count"] == 4


def _split_dir(tmp_path, class_ind, train, test):
    d = tmp_path / "splits"
    os.makedirs(d, exist_ok=True)
    for name, lines in (("classInd.txt", class_ind), ("trainlist01.txt", train),
                        ("testlist01.txt", test)):
        (d / name).write_bytes(("\r\n".join(lines) + "\r\n\r\n").encode())
    return str(d)


def test_handstand_naming_crlf_and_blank_lines(tmp_path):
    frames = str(tmp_path / "frames")
    for video in ("HandstandPushups/v_HandStandPushups_g08_c01", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01"):
        write_frame_folder(frames, video, [stamped_frame(i) for i in range(5)], template=JPG)
    splits = _split_dir(tmp_path, ["1 ApplyEyeMakeup", "", "2 HandstandPushups"],
                        ["HandstandPushups/v_HandStandPushups_g08_c01.avi 2"],
                        ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"])
    train, val, classes, _ = build_split_lists(frames, splits, 1)
    assert classes == ["ApplyEyeMakeup", "HandstandPushups"]
    assert train == [("HandstandPushups/v_HandStandPushups_g08_c01", 5, 1)]
    assert val == [("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01", 5, 0)]


def test_class_missing_from_class_ind_is_named(tmp_path):
    splits = _split_dir(tmp_path, ["1 ApplyEyeMakeup"], ["Typing/v_Typing_g08_c01.avi 2"], [])
    with pytest.raises(DataError, match=r"trainlist01.txt:1: class 'Typing' is not in"):
        build_split_lists(str(tmp_path), splits, 1)


def test_missing_video_and_missing_middle_frame(tmp_path):
    from data_tools.build_lists import main as build_main
    frames = str(tmp_path / "frames")
    write_frame_folder(frames, "A/v_A_g01_c01", [stamped_frame(i) for i in range(9)],
                       template=JPG, skip={4})
    write_frame_folder(frames, "A/v_A_g02_c01", [stamped_frame(i) for i in range(9)], template=JPG)
    splits = _split_dir(tmp_path, ["1 A"], ["A/v_A_g02_c01.avi 1", "A/v_A_g03_c01.avi 1"],
                        ["A/v_A_g01_c01.avi"])
    with pytest.raises(DataError, match=r"(?s)v_A_g03_c01: missing.*img_00004.jpg"):
        build_split_lists(frames, splits, 1)
    train, val, _, problems = build_split_lists(frames, splits, 1, allow_missing=True)
    assert [e.video for e in train] == ["A/v_A_g02_c01"] and val == [] and len(problems) == 2
    out = str(tmp_path / "lists")
    assert build_main(["--frames", frames, "--splits", splits, "--out", out]) == 2
    assert build_main(["--frames", frames, "--splits", splits, "--out", out,
                       "--allow-missing"]) == 0
    assert read_list(os.path.join(out, "ucf101_train_split1.txt")) == train


def test_hmdb51_split_files(tmp_path):
    frames = str(tmp_path / "frames")
    split_dir = tmp_path / "hmdb"
    os.makedirs(split_dir)
    for cls in ("brush_hair", "cartwheel"):
        lines = []
        for k, use in enumerate((1, 2, 0)):
            name = f"{cls}_clip{k}"
            write_frame_folder(frames, f"{cls}/{name}", [stamped_frame(i) for i in range(3)],
                               template=JPG)
            lines.append(f"{name}.avi {use} ")
        (split_dir / f"{cls}_test_split1.txt").write_text("\n".join(lines) + "\n")
        (split_dir / f"{cls}_test_split2.txt").write_text(f"{cls}_clip0.avi 2\n")
    train, val, classes, _ = build_split_lists(frames, str(split_dir), 1, dataset="hmdb51")
    assert classes == ["brush_hair", "cartwheel"]
    assert train == [("brush_hair/brush_hair_clip0", 3, 0), ("cartwheel/cartwheel_clip0", 3, 1)]
    assert [e.video for e in val] == ["brush_hair/brush_hair_clip1", "cartwheel/cartwheel_clip1"]


def test_dataset_doctor_names_each_bad_file(tmp_path):
    from data_tools.verify_dataset import main as verify_main
    frames = str(tmp_path / "frames")
    for v in range(4):
        write_frame_folder(frames, f"C{v % 2}/v{v}", [stamped_frame(i) for i in range(6)],
                           template=JPG, skip={3} if v == 1 else ())
    open(os.path.join(frames, "C0/v2", JPG.format(2)), "wb").close()
    with open(os.path.join(frames, "C1/v3", JPG.format(5)), "wb") as f:
        f.write(b"not a jpeg at all" * 10)
    good = str(tmp_path / "good.txt")
    write_list(good, [("C0/v0", 6, 0)])
    bad = str(tmp_path / "bad.txt")
    write_list(bad, [("C0/v0", 6, 0), ("C1/v1", 6, 1), ("C0/v2", 6, 0), ("C1/v3", 7, 1),
                     ("C1/v3", 7, 5)])
    assert verify_dataset(frames, [good])["problems"] == []
    problems = "\n".join(verify_dataset(frames, [bad], JPG, num_classes=2, workers=2)["problems"])
    for expected in ("C1/v3 duplicates", "img_00003.jpg", "C0/v2/img_00002.jpg: empty file",
                     "C1/v3/img_00005.jpg: unreadable image", "list says 7 frames",
                     "label 5 outside 0..1", "class C1 has label 5"):
        assert expected in problems, expected
    assert verify_main(["--frames", frames, "--list", good]) == 0
    assert verify_main(["--frames", frames, "--list", good, bad, "--no-decode"]) == 1
