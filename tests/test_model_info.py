"""Model info: the REFERENCE table (exact parameters, GMACs within 0.5%), a hand-computed
GMACs case, ResNet-18 stage shapes, the cheap path vs a real forward, and the CLI."""
import importlib.util
import json
import os
import sys

import pytest

from dist_train.models import build_model
from dist_train.models.info import conv3d_output_shape, describe_model, measure
from helpers import REPO, run_in_own_group

pytestmark = pytest.mark.paddle2  # also run under Paddle 2.6.2


# REFERENCE section 1: model, options, params (400 classes), params (101 classes), GMACs
TABLE = [
    ("resnet-10", {"shortcut": "B"}, 14_604_624, 14_451_237, 5.654),
    ("resnet-18", {"shortcut": "A"}, 33_235_280, 33_081_893, 8.296),
    ("resnet-18", {"shortcut": "B"}, 33_409_104, 33_255_717, 8.308),
    ("resnet-34", {"shortcut": "A"}, 63_544_912, 63_391_525, 12.685),
    ("resnet-34", {"shortcut": "B"}, 63_718_736, 63_565_349, 12.696),
    ("resnet-50", {"shortcut": "B"}, 47_018_576, 46_405_925, 10.069),
    ("resnet-101", {"shortcut": "B"}, 86_064_720, 85_452_069, 13.891),
    ("resnet-152", {"shortcut": "B"}, 118_223_440, 117_610_789, 18.611),
    ("resnet-200", {"shortcut": "B"}, 127_423_056, 126_810_405, 25.805),
    ("resnext-101", {}, 48_340_816, 47_728_165, 9.568),
    ("wideresnet-50", {}, 158_248_272, 157_635_621, 26.24),
    ("preresnet-18", {}, 33_408_208, None, 8.308),
    ("densenet-121", {}, 11_696_528, None, 10.404),
    ("densenet-201", {}, 26_143_120, None, 11.243),
]


@pytest.mark.parametrize("name,options,params400,params101,gmacs", TABLE)
def test_reference_table(name, options, params400, params101, gmacs):
    info = describe_model(name, 400, **options)
    assert info["params"] == params400
    assert abs(info["gmacs"] / gmacs - 1) < 0.005, info["gmacs"]
    assert info["output"] == [1, 400]
    if params101 is not None:
        assert describe_model(name, 101, **options)["params"] == params101


def test_resnet18_gmacs_by_hand():
    # ResNet-18 A at 16x112x112: output elements x C_in x k^3 for every conv, plus fc in x out
    stem = 64 * 16 * 56 * 56 * (3 * 7 * 7 * 7)
    layer1 = 4 * (64 * 8 * 28 * 28) * (64 * 27)
    layer2 = (128 * 4 * 14 * 14) * (64 * 27 + 3 * 128 * 27)
    layer3 = (256 * 2 * 7 * 7) * (128 * 27 + 3 * 256 * 27)
    layer4 = (512 * 1 * 4 * 4) * (256 * 27 + 3 * 512 * 27)
    fc = 512 * 400
    by_hand = stem + layer1 + layer2 + layer3 + layer4 + fc
    assert describe_model("resnet-18", 400, shortcut="A")["macs"] == by_hand
    # shortcut B adds three strided 1x1x1 projections
    projections = 128 * 4 * 14 * 14 * 64 + 256 * 2 * 7 * 7 * 128 + 512 * 1 * 4 * 4 * 256
    assert describe_model("resnet-18", 400, shortcut="B")["macs"] == by_hand + projections


def test_resnet18_stage_shapes():
    stages = {s["name"]: s["shape"] for s in describe_model("resnet-18", 101)["stages"]}
    assert stages["conv1"] == [64, 16, 56, 56]
    assert stages["maxpool"] == [64, 8, 28, 28]
    assert stages["layer1"] == [64, 8, 28, 28]
    assert stages["layer2"] == [128, 4, 14, 14]
    assert stages["layer3"] == [256, 2, 7, 7]
    assert stages["layer4"] == [512, 1, 4, 4]
    assert stages["fc"] == [101]


@pytest.mark.parametrize("name,shape", [("resnet-18", [1, 3, 16, 112, 112]),
                                        ("densenet-121", [2, 3, 16, 48, 40]),
                                        ("resnext-50", [1, 3, 8, 40, 40])])
def test_shape_only_convolutions_count_like_a_real_forward(name, shape):
    model = build_model(name, 7)
    real = measure(model, shape)  # real convolutions, initialised weights
    cheap = measure(model, shape, shape_only=True)
    assert cheap == real
    if shape[3] == shape[4]:  # describe_model: lazily built, same numbers
        lazy = describe_model(name, 7, frames=shape[2], size=shape[3])
        assert lazy["macs"] == real["macs"]
        assert lazy["params"] == real["params"] and lazy["stages"] == real["stages"]


def test_channels_last_description_and_conv_shape():
    first = describe_model("resnet-18", 10, frames=8, size=64, width_mult=0.25)
    last = describe_model("resnet-18", 10, frames=8, size=64, width_mult=0.25,
                          data_format="NDHWC")
    assert first["macs"] == last["macs"] and first["params"] == last["params"]
    conv = build_model("resnet-18", 2, width_mult=0.25, data_format="NDHWC").conv1
    assert conv3d_output_shape(conv, [2, 16, 112, 112, 3]) == [2, 16, 56, 56, 16]


def load_cli():
    path = os.path.join(REPO, "scripts", "model_info.py")
    spec = importlib.util.spec_from_file_location("model_info_cli", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_text_and_json(capsys):
    cli = load_cli()
    assert cli.main(["--model", "resnet-18", "--shortcut", "B", "--classes", "101"]) == 0
    text = capsys.readouterr().out
    assert "33,255,717" in text and "8.308" in text and "512x1x4x4" in text
    assert cli.main(["--model", "densenet-121", "--frames", "8", "--size", "64", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 11_696_528 and 0 < info["gmacs"] < 10.404
    with pytest.raises(SystemExit):
        cli.main(["--model", "densenet-121", "--shortcut", "A"])
    assert "does not apply" in capsys.readouterr().err


def test_cli_runs_as_a_script():
    proc = run_in_own_group([sys.executable, "scripts/model_info.py", "--model", "resnext-101",
                             "--classes", "101", "--json"], 120, REPO, dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["params"] == 47_728_165 and abs(info["gmacs"] / 9.568 - 1) < 0.005
