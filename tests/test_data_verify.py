"""Dataset doctor and list parsing: problems point at the list file's real line numbers."""
import pytest

from dist_train.data.lists import DataError, read_list, read_list_numbered
from dist_train.data.prepare.verify import verify_dataset

from data_helpers import stamped_frame, write_frame_folder

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2 (scripts/test.sh leg 2)

JPG = "img_{:05d}.jpg"


def test_problem_lines_count_blank_lines(tmp_path):
    frames = str(tmp_path / "frames")
    for v in range(3):
        write_frame_folder(frames, f"C{v % 2}/v{v}", [stamped_frame(i) for i in range(4)],
                           template=JPG)
    listing = tmp_path / "val.txt"
    # Line 1 good, 2 blank, 3 good, 4 blank (with spaces), 5 wrong frame count, 6 duplicate.
    listing.write_text("C0/v0 4 0\n\nC1/v1 4 1\n   \nC0/v2 9 0\nC1/v1 4 1\n", encoding="utf-8")
    report = verify_dataset(frames, [str(listing)], JPG, num_classes=2, decode=False)
    problems = report["problems"]
    assert report["videos"] == 4
    assert any(p.startswith(f"{listing}:5: list says 9 frames") for p in problems), problems
    assert any(p.startswith(f"{listing}:6: C1/v1 duplicates {listing}:3") for p in problems), problems
    assert len(problems) == 2, problems


def test_numbered_list_keeps_file_lines_and_parse_errors_name_them(tmp_path):
    listing = tmp_path / "train.txt"
    listing.write_bytes(b"\r\nA/a 3 0\r\n\r\nB/b 5 1\r\n")  # CRLF and blank lines
    assert [(n, e.video) for n, e in read_list_numbered(str(listing))] == [(2, "A/a"), (4, "B/b")]
    assert [e.num_frames for e in read_list(str(listing))] == [3, 5]
    listing.write_text("A/a 3 0\n\n\nB/b five 1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.txt:4: num_frames and label must be integers"):
        read_list(str(listing))


def test_the_cli_writes_every_problem_to_its_report_and_names_it_in_one_line(tmp_path):
    import json
    import os

    from helpers import REPO, run_cli

    frames = str(tmp_path / "frames")
    for v in range(2):
        write_frame_folder(frames, f"C{v}/v{v}", [stamped_frame(i) for i in range(4)], template=JPG)
    listing = tmp_path / "lists" / "val.txt"
    listing.parent.mkdir()
    listing.write_text("C0/v0 4 0\nC1/v1 6 1\nC1/missing 4 1\n", encoding="utf-8")
    proc = run_cli([os.path.join(REPO, "data_tools", "verify_dataset.py"), "--frames", frames,
                    "--list", str(listing), "--workers", "1"], check=False)
    report_path = tmp_path / "lists" / "verify_report.json"
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and "3 videos" in lines[0] and "2 problem(s)" in lines[0] \
        and str(report_path) in lines[0], proc.stdout
    problems = json.loads(report_path.read_text())["problems"]
    assert len(problems) == 2 and any(f"{listing}:2: list says 6 frames" in p for p in problems)
    assert any("C1/missing" in p for p in problems), problems
    listing.write_text("C0/v0 4 0\n", encoding="utf-8")
    clean = run_cli([os.path.join(REPO, "data_tools", "verify_dataset.py"), "--frames", frames,
                     "--list", str(listing), "--workers", "1"])
    assert "0 problem(s); report" in clean.stdout
    assert json.loads(report_path.read_text())["problems"] == []  # replaced, not appended
