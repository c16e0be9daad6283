import os

import pytest

pytestmark = pytest.mark.paddle2
import yaml

from dist_train import config as C
from dist_train.rundir import prepare_run_dir, load_saved_config, RUN_INFO_FILE


def write(path, text):
    path.write_text(text)
    return str(path)


def test_defaults_yaml_and_typed_overrides(tmp_path):
    cfg_file = write(tmp_path / "exp.yaml", "train:\n  lr: 0.05\n  epochs: 3\nmodel:\n  name: resnet-10\n")
    cfg = C.load_config(cfg_file, ["train.lr=0.01", "data.scales=[1, 0.5]", "model.sync_bn=false",
                                   "model.shortcut=B", "train.max_steps=null", "run.dir=rel/run"])
    assert cfg["train.lr"] == 0.01 and isinstance(cfg["train.lr"], float)
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg["model.name"] == "resnet-10"
    assert cfg["data.scales"] == [1.0, 0.5]
    assert cfg["model.sync_bn"] is False
    assert cfg["model.shortcut"] == "B"
    assert cfg["train.max_steps"] is None
    assert cfg["run.dir"] == os.path.abspath("rel/run")  # relative paths resolve against the cwd
    assert cfg["train.batch_size"] == C.SCHEMA["train.batch_size"].default  # untouched default
    assert C.load_config(None, ["train.lr=1"])["train.lr"] == 1.0  # an int is a valid float
    assert C.load_config(None, ["train.lr=1e-3"])["train.lr"] == 1e-3  # YAML 1.1 reads this as text
    assert C.load_config(write(tmp_path / "e.yaml", "optim:\n  weight_decay: 5e-4\n"))["optim.weight_decay"] == 5e-4


def test_unknown_key_suggests_nearest(tmp_path):
    with pytest.raises(C.ConfigError, match=r"unknown config key 'train.batchsize'.*'train.batch_size'"):
        C.load_config(None, ["train.batchsize=8"])
    cfg_file = write(tmp_path / "typo.yaml", "optim:\n  weight_decy: 0.1\n")
    with pytest.raises(C.ConfigError, match=r"typo.yaml.*'optim.weight_decy'.*'optim.weight_decay'"):
        C.load_config(cfg_file)
    with pytest.raises(C.ConfigError, match=r"'trian'.*did you mean"):
        C.load_config(write(tmp_path / "sec.yaml", "trian: 3\n"))


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    bad = write(tmp_path / "bad.yaml", "train:\n  lr: 0.1\n  epochs: [1, 2\nmodel:\n  name: x\n")
    with pytest.raises(C.ConfigError) as err:
        C.load_config(bad)
    assert "bad.yaml line" in str(err.value)
    line = int(str(err.value).split("line ")[1].split(",")[0])
    assert 3 <= line <= 4


def test_wrong_type_names_key_and_expected_type(tmp_path):
    with pytest.raises(C.ConfigError, match=r"'train.epochs' expects int, got str 'ten'"):
        C.load_config(None, ["train.epochs=ten"])
    with pytest.raises(C.ConfigError, match=r"'train.epochs' expects int, got float"):
        C.load_config(write(tmp_path / "f.yaml", "train:\n  epochs: 2.5\n"))
    with pytest.raises(C.ConfigError, match=r"'model.sync_bn' expects bool"):
        C.load_config(None, ["model.sync_bn=1"])
    with pytest.raises(C.ConfigError, match=r"'amp.level' must be one of"):
        C.load_config(None, ["amp.level=O3"])
    with pytest.raises(C.ConfigError, match=r"'train.lr' expects float, got str '1e-3x'"):
        C.load_config(None, ["train.lr=1e-3x"])
    with pytest.raises(C.ConfigError, match=r"'log.every_steps' must be >= 1, got 0"):
        C.load_config(None, ["log.every_steps=0"])
    with pytest.raises(C.ConfigError, match=r"'data.clip_len' must be >= 1"):
        C.load_config(write(tmp_path / "z.yaml", "data:\n  clip_len: 0\n"))
    with pytest.raises(C.ConfigError, match=r"'train.lr' must not be null"):
        C.load_config(None, ["train.lr=null"])
    with pytest.raises(C.ConfigError, match=r"expected section.key=value"):
        C.load_config(None, ["train.lr"])


def test_resolved_dump_round_trips_and_run_dir_records(tmp_path):
    cfg = C.load_config(None, [f"run.dir={tmp_path / 'run'}", "train.lr=0.2", "data.scales=[1.0]"])
    prepare_run_dir(cfg)
    saved_text = (tmp_path / "run" / "config.yaml").read_text()
    tree = yaml.safe_load(saved_text)
    assert tree["train"]["lr"] == 0.2 and set(tree) >= {"run", "model", "data", "train", "optim"}
    assert len([k for s in tree.values() for k in s]) == len(C.SCHEMA)  # every key, resolved
    assert load_saved_config(str(tmp_path / "run")).flat() == cfg.flat()
    info = yaml.safe_load((tmp_path / "run" / RUN_INFO_FILE).read_text())
    assert "paddlepaddle" in info["packages"] and "numpy" in info["packages"]
    assert "git_commit" in info
    prepare_run_dir(cfg)  # same config again: fine


def test_differing_config_in_existing_run_dir(tmp_path):
    run = str(tmp_path / "run")
    prepare_run_dir(C.load_config(None, [f"run.dir={run}", "train.lr=0.2"]))
    changed = C.load_config(None, [f"run.dir={run}", "train.lr=0.3", "train.epochs=7"])
    with pytest.raises(C.ConfigError) as err:
        prepare_run_dir(changed)
    message = str(err.value)
    assert "train.lr: 0.2 -> 0.3" in message and "train.epochs: 200 -> 7" in message
    assert load_saved_config(run)["train.lr"] == 0.2  # nothing overwritten
    differences = prepare_run_dir(changed, accept_changed_config=True)
    assert len(differences) == 2 and load_saved_config(run)["train.lr"] == 0.3


def test_every_schema_default_is_valid():
    for key, spec in C.SCHEMA.items():
        assert spec.help and key.count(".") == 1
        if spec.default is None:
            assert spec.nullable, key
        else:
            assert C.check_value(key, spec.default, "schema") is not None
    assert set(C.MINIMUM) <= set(C.SCHEMA)
