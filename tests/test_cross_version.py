"""Across Paddle versions (leg 1 of scripts/test.sh, Paddle 3.x, driving Paddle 2.6.2 in
<repo>/.venv-paddle2 as a subprocess): a legacy export written by 3.x predicts the same under
2.6.2, a PIR export is refused by 2.6.2 with a clear message, and a checkpoint written by either
version resumes under the other and continues exactly.

The export + predict round trip on each version alone is tests/test_export_predict.py (legacy and
PIR on 3.x, legacy on 2.6.2 in leg 2)."""
import json
import os

import numpy as np
import pytest

from dist_train import compat
from helpers import PYTHON, REPO, child_env, run_cli, run_in_own_group
from videoeval_fixtures import CLASSES, VIDEOS, make_fixture

PADDLE2_VENV = os.path.join(REPO, ".venv-paddle2")
PADDLE2_PYTHON = os.path.join(PADDLE2_VENV, "bin", "python")
SETUP_HINT = ("create it with: DIST_TRAIN_VENV=.venv-paddle2 DIST_TRAIN_PADDLE=paddlepaddle==2.6.2 "
              "scripts/setup.sh --test   (scripts/test.sh does this before leg 1)")


def _paddle_version(python):
    proc = run_in_own_group([python, "-c", "import paddle; print(paddle.__version__)"], 120, REPO,
                            child_env())
    assert proc.returncode == 0, f"{python} cannot import paddle:\n{proc.stderr[-3000:]}\n{SETUP_HINT}"
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def versions():
    """{"3": (python, version), "2": (python, version)}; fails when either is missing."""
    if not os.access(PADDLE2_PYTHON, os.X_OK):
        pytest.fail(f"{PADDLE2_VENV} (Paddle 2.6.2) does not exist; {SETUP_HINT}")
    if compat.paddle_major() < 3:
        pytest.fail(f"tests/test_cross_version.py runs under Paddle 3 (leg 1); this is Paddle "
                    f"{compat.paddle_version()}")
    old = _paddle_version(PADDLE2_PYTHON)
    assert old.startswith("2."), f"{PADDLE2_PYTHON} has Paddle {old}, expected 2.x; {SETUP_HINT}"
    return {"3": (PYTHON, compat.paddle_version()), "2": (PADDLE2_PYTHON, old)}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    from dist_train.config import load_config
    from dist_train.deploy.export import export_model

    base = str(tmp_path_factory.mktemp("xexport"))
    fixture = make_fixture(base)
    cfg = load_config(fixture["config"])
    for fmt in ("legacy", "pir"):  # written by this process's Paddle 3
        fixture[fmt] = export_model(cfg, fixture["weights"], os.path.join(base, fmt), fmt)
    return fixture


def _predict(python, model_dir, videos_root):
    proc = run_cli(["dist_train/predict.py", "--model", model_dir, "--video", videos_root,
                    "--topk", str(len(CLASSES)), "--json"], python=python)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    return {os.path.relpath(row["video"], videos_root): row["topk"] for row in rows}


def test_legacy_export_from_paddle3_predicts_the_same_under_paddle2(versions, exports):
    assert os.path.isfile(os.path.join(exports["legacy"], "model.pdmodel"))
    new = _predict(versions["3"][0], exports["legacy"], exports["root"])
    old = _predict(versions["2"][0], exports["legacy"], exports["root"])
    assert len(new) == len(VIDEOS) and sorted(old) == sorted(new)
    for video, topk in new.items():
        assert old[video][0]["label"] == topk[0]["label"], video
        scores_new = {t["label"]: t["score"] for t in topk}
        scores_old = {t["label"]: t["score"] for t in old[video]}
        assert sorted(scores_old) == sorted(CLASSES) == sorted(scores_new)
        for label, score in scores_new.items():
            assert abs(scores_old[label] - score) <= 1e-5, (video, label, scores_old[label], score)
    spread = [max(t["score"] for t in topk) - min(t["score"] for t in topk) for topk in new.values()]
    assert max(spread) > 1e-3  # the model separates classes: the comparison is not vacuous


def test_pir_export_is_refused_by_paddle2_naming_the_fix(versions, exports):
    proc = run_cli(["dist_train/predict.py", "--model", exports["pir"], "--video",
                    exports["root"]], python=versions["2"][0], check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "model.json" in proc.stderr and f"Paddle {versions['2'][1]}" in proc.stderr
    assert "--format legacy" in proc.stderr and not proc.stdout


@pytest.mark.parametrize("writer,reader", [("3", "2"), ("2", "3")])
def test_checkpoint_resumes_under_the_other_paddle_and_continues_exactly(versions, tmp_path,
                                                                         writer, reader):
    run_dir, straight, resumed = tmp_path / "run", tmp_path / "straight.npz", tmp_path / "resumed.npz"
    saved = run_cli(["tests/cross_version_probe.py", "save", str(run_dir), str(straight)],
                    python=versions[writer][0]).stdout.strip().splitlines()[-1]
    with open(os.path.join(saved, "state.json")) as f:
        assert json.load(f)["versions"]["paddle"] == versions[writer][1]
    proc = run_cli(["tests/cross_version_probe.py", "resume", saved, str(resumed)],
                   python=versions[reader][0])
    # the loader says the checkpoint comes from the other Paddle, naming both versions
    assert f"written by Paddle {versions[writer][1]}; loading under {versions[reader][1]}" in proc.stderr
    with np.load(straight) as a, np.load(resumed) as b:
        assert sorted(a.files) == sorted(b.files) and len(a.files) == 2 * 7
        names = [key[len("after."):] for key in a.files if key.startswith("after.")]
        for name in names:
            assert np.array_equal(b[f"before.{name}"], a[f"before.{name}"]), name  # loaded exactly
            np.testing.assert_allclose(b[f"after.{name}"], a[f"after.{name}"], rtol=0, atol=1e-6,
                                       err_msg=name)
        # the step after the checkpoint changed the weights: not a comparison of two loads
        assert not np.array_equal(a["after.fc.weight"], a["before.fc.weight"])
