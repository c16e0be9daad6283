"""Fine-tuning from this project's own runs: a checkpoint, run or export directory (or converted
weights) as model.pretrained/--weights, with a new head; the network options and normalisation
the source records are taken where the config keeps defaults, and a contradiction stops with a
mismatch error naming the keys."""
import json
import os
import shutil

import numpy as np
import paddle
import pytest

from helpers import run_cli

pytestmark = pytest.mark.paddle2

# The "Kinetics" run: options and a normalisation that differ from the schema defaults.
SOURCE = ["model.name=resnet-10", "model.width_mult=0.125", "model.conv1_t_size=3",
          "model.shortcut=A", "model.num_classes=5", "model.normalization=activitynet",
          "data.clip_len=4", "data.crop_size=16", "model.sync_bn=false"]


def cfg_of(*overrides):
    from dist_train.config import load_config

    return load_config(None, list(overrides))


def test_adopt_takes_defaults_and_names_each_contradiction():
    from dist_train.models.from_config import PretrainedMismatch, adopt_model_spec, model_spec

    spec = model_spec(cfg_of("model.name=resnet-50", "model.shortcut=B", "model.conv1_t_size=3",
                             "model.normalization=activitynet", "model.num_classes=400"))
    cfg, taken = adopt_model_spec(cfg_of("model.num_classes=101"), spec, "k400")
    assert (cfg["model.name"], cfg["model.conv1_t_size"], cfg["model.normalization"]) == \
        ("resnet-50", 3, "activitynet")
    assert cfg["model.num_classes"] == 101  # a new head: the class count is the fine-tune's
    assert [t.split("=")[0] for t in taken] == ["model.name", "model.conv1_t_size",
                                                "model.normalization"]
    assert cfg["model.shortcut"] is None  # null is resnet-50's own default, B
    same, nothing = adopt_model_spec(cfg, spec, "k400")
    assert nothing == [] and same is cfg
    with pytest.raises(PretrainedMismatch) as error:  # the config contradicts two keys
        adopt_model_spec(cfg_of("model.name=resnet-50", "model.shortcut=A",
                                "model.normalization=imagenet"), spec, "k400")
    text = str(error.value)
    assert "k400" in text and "model.shortcut: the config has 'A', the weights need 'B'" in text
    assert "model.normalization: the config has imagenet" in text and "need activitynet" in text
    assert "model.conv1_t_size" not in text  # left at its default: taken, not an error
    with pytest.raises(PretrainedMismatch, match="model.name: the config has 'resnet-34'"):
        adopt_model_spec(cfg_of("model.name=resnet-34"), spec, "k400")
    with pytest.raises(PretrainedMismatch, match="model.cardinality: .* does not apply to resnet-50"):
        adopt_model_spec(cfg_of("model.cardinality=16"), spec, "k400")
    with pytest.raises(PretrainedMismatch) as strict:  # adopt off: defaults are differences too
        adopt_model_spec(cfg_of("model.name=resnet-50", "model.shortcut=B"), spec, "k400", adopt=False)
    assert "model.conv1_t_size: the config has None" in str(strict.value)
    assert "model.normalization" in str(strict.value) and "model.shortcut" not in str(strict.value)
    with pytest.raises(PretrainedMismatch, match="model.name"):
        adopt_model_spec(cfg_of(), spec, "k400", adopt=False)
    # Evaluation also takes the class count, and refuses a contradicting one.
    evaluated, _ = adopt_model_spec(cfg_of(), spec, "k400", include_classes=True)
    assert evaluated["model.num_classes"] == 400
    with pytest.raises(PretrainedMismatch, match="model.num_classes"):
        adopt_model_spec(cfg_of("model.num_classes=51"), spec, "k400", include_classes=True)
    # A normalisation that is no preset arrives as custom numbers.
    odd = dict(spec, mean=[1.0, 2.0, 3.0], std=None, preset=None)
    custom, _ = adopt_model_spec(cfg_of(), odd, "odd")
    assert (custom["model.normalization"], custom["model.mean"], custom["model.std"]) == \
        ("custom", [1.0, 2.0, 3.0], None)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A checkpoint (in a run directory), an export of it and converted-style weights."""
    from dist_train import checkpoint as ck
    from dist_train.deploy.export import export_model
    from dist_train.models.from_config import build_eval_model

    base = tmp_path_factory.mktemp("sources")
    cfg = cfg_of(*SOURCE, f"run.dir={base / 'k400'}", "export.format=auto")
    paddle.seed(11)
    network = build_eval_model(cfg).network
    optimizer = paddle.optimizer.Momentum(0.1, parameters=network.parameters())
    state = {"epoch": 1, "step_in_epoch": 0, "global_step": 7, "best_metric": 0.5,
             "best_epoch": 0, "scheduler": {}, "finished": True}
    checkpoint = ck.save_checkpoint(cfg["run.dir"], ck.step_tag(7), model=network,
                                    optimizer=optimizer, scaler=paddle.amp.GradScaler(enable=False),
                                    train_state=state, cfg=cfg, keep_last=2, is_best=True)
    export = export_model(cfg, checkpoint, str(base / "export"))
    converted = str(base / "converted.pdparams")
    paddle.save(network.state_dict(), converted)
    with open(str(base / "converted.meta.json"), "w") as f:
        json.dump({"model": "resnet-10", "shortcut": "A", "num_classes": 5,
                   "options": {"width_mult": 0.125, "conv1_t_size": 3},
                   "normalization": {"mean": [114.7748, 107.7354, 99.4750], "std": None}}, f)
    weights = {k: v.numpy().copy() for k, v in network.state_dict().items()}
    return {"base": base, "cfg": cfg, "weights": weights, "checkpoint": checkpoint,
            "run": cfg["run.dir"], "export": export, "converted": converted}


@pytest.mark.parametrize("kind", ["checkpoint", "run", "export", "converted"])
def test_every_source_gives_its_network_normalisation_and_weights(sources, kind):
    from dist_train.checkpoint import adopt_source_model, load_weights
    from dist_train.models import build_model
    from dist_train.models.from_config import network_options, normalization

    fine_tune = cfg_of("model.num_classes=3", "model.width_mult=0.125")  # UCF-101 stand-in
    cfg, taken = adopt_source_model(fine_tune, sources[kind])
    assert cfg["model.name"] == "resnet-10" and cfg["model.shortcut"] == "A"
    assert cfg["model.conv1_t_size"] == 3 and cfg["model.normalization"] == "activitynet"
    assert normalization(cfg)["std"] is None and cfg["model.num_classes"] == 3
    assert "model.normalization=activitynet" in " ".join(taken)
    network = build_model(cfg["model.name"], 3, **network_options(cfg))
    report = load_weights(sources[kind], network)
    assert report["new_head"] and report["skipped_head"] == ["fc.bias", "fc.weight"]
    loaded = network.state_dict()
    for key, value in sources["weights"].items():
        if not key.startswith("fc."):
            np.testing.assert_array_equal(loaded[key].numpy(), value, err_msg=key)
    assert list(loaded["fc.weight"].shape) == [network.fc.weight.shape[0], 3]


def test_export_carries_the_network_state_dict_and_old_exports_are_named(sources, tmp_path):
    from dist_train.checkpoint import CheckpointError, load_weights
    from dist_train.models import build_model

    with open(os.path.join(sources["export"], "meta.json")) as f:
        assert json.load(f)["network_params"] == "network.pdparams"
    old = tmp_path / "old_export"
    shutil.copytree(sources["export"], old)
    os.remove(old / "network.pdparams")
    with pytest.raises(CheckpointError, match="predates fine-tuning from exports"):
        load_weights(str(old), build_model("resnet-10", 3, width_mult=0.125))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither a checkpoint"):
        load_weights(str(tmp_path / "empty"), build_model("resnet-10", 3, width_mult=0.125))


def test_train_stops_on_a_contradicting_config_naming_the_key(sources, tmp_path):
    config = tmp_path / "ft.yaml"
    config.write_text(f"run:\n  dir: {tmp_path / 'ft'}\nmodel:\n  num_classes: 3\n"
                      "  normalization: kinetics\n  mean: [1, 2, 3]\n")
    proc = run_cli(["dist_train/train.py", "-c", str(config), "--weights", sources["run"]],
                   check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "model.normalization: the config has" in proc.stderr and sources["run"] in proc.stderr
    assert not os.path.exists(tmp_path / "ft" / "checkpoints")
