"""tests/conftest.py's rules, on a throw-away suite: a module skipped at collection (a
module-level ``pytest.importorskip``), a module that fails to import, or a run below the
committed floor fails the run; scripts/test.sh passes the floor from tests/MIN_TESTS."""
import os
import shutil

from helpers import REPO, child_env, run_cli

PASSING = "def test_passes():\n    assert 1 + 1 == 2\n"


def run_suite(tmp_path, modules, **env):
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(os.path.join(REPO, "tests", "conftest.py"), suite / "conftest.py")
    for name, text in modules.items():
        (suite / name).write_text(text)
    environ = child_env(**env)
    for key in ("DIST_TRAIN_MIN_TESTS", "DIST_TRAIN_ALLOW_SKIPS", "DIST_TRAIN_EXPECTED_TESTS"):
        if key not in env:
            environ.pop(key, None)
    return run_cli(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(suite),
                    str(suite)], check=False, cwd=str(suite), env=environ)


def test_a_module_skipped_at_collection_fails_the_run(tmp_path):
    proc = run_suite(tmp_path, {"test_ok.py": PASSING, "test_gone.py":
                                "import pytest\npytest.importorskip('no_such_module_x')\n" + PASSING})
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "1 module(s) not collected" in proc.stdout and "test_gone.py (skipped" in proc.stdout
    assert "no_such_module_x" in proc.stdout


def test_a_module_failing_to_import_fails_the_run(tmp_path):
    proc = run_suite(tmp_path, {"test_ok.py": PASSING, "test_broken.py": "import no_such_module_y\n"})
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "no_such_module_y" in proc.stdout


def test_the_floor_and_a_clean_run(tmp_path):
    clean = run_suite(tmp_path, {"test_ok.py": PASSING}, DIST_TRAIN_MIN_TESTS="1")
    assert clean.returncode == 0 and "1 passed" in clean.stdout, clean.stdout[-3000:]
    shutil.rmtree(tmp_path / "suite")
    short = run_suite(tmp_path, {"test_ok.py": PASSING}, DIST_TRAIN_MIN_TESTS="2")
    assert short.returncode == 1
    assert "only 1 tests selected, expected at least 2" in short.stdout


def test_test_sh_passes_each_leg_its_committed_floor():
    with open(os.path.join(REPO, "tests", "MIN_TESTS")) as f:
        floors = dict(line.split() for line in f if line.strip() and not line.startswith("#"))
    assert set(floors) == {"paddle3", "paddle2"}
    assert int(floors["paddle3"]) > int(floors["paddle2"]) > 200
    with open(os.path.join(REPO, "scripts", "test.sh")) as f:
        script = f.read()
    assert 'DIST_TRAIN_MIN_TESTS="$FLOOR1" run_leg "paddle 3.3.1' in script
    assert 'DIST_TRAIN_MIN_TESTS="$FLOOR2" run_leg "paddle 2.6.2' in script
