"""Conversion of the released PyTorch checkpoints: numerical equivalence with PyTorch twins,
old/new file layouts, DenseNet's old names, error listings, normalisation metadata."""
import importlib.util
import json
import os
import sys

import numpy as np
import paddle
import pytest

torch = pytest.importorskip("torch")  # CI installs torch CPU; conftest fails on any skip

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_twins import randomize_batch_norm, save_like_released, twin  # noqa: E402

from dist_train.models import build_model  # noqa: E402
from dist_train.models.convert import (StateDictMismatch, convert_checkpoint,  # noqa: E402
                                       converted_model_logits, infer_shortcut, meta_path_for,
                                       rename_torch_keys, verification_input)
from dist_train.safeload import restricted_load  # noqa: E402
from helpers import REPO  # noqa: E402

pytestmark = pytest.mark.torch


def load_cli(relpath):
    spec = importlib.util.spec_from_file_location(relpath.replace("/", "_"),
                                                  os.path.join(REPO, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def paddle_logits(dst, x):
    meta = json.load(open(meta_path_for(dst)))
    options = {"shortcut": meta["shortcut"]} if meta["shortcut"] else {}
    model = build_model(meta["model"], meta["num_classes"], **options)
    model.set_state_dict(restricted_load(dst))
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def torch_logits(model, x):
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def assert_close_relative(got, want, rel=1e-4):
    scale = np.abs(want).max()
    assert scale > 0
    assert np.abs(got - want).max() <= rel * scale, (np.abs(got - want).max(), scale)


# (model, shortcut, file name, key prefix, num_batches_tracked, legacy non-zip file, input
# [N, 3, T, H, W]). At 8x32x32 layer3/4 have temporal size 1; resnet-18 B runs at the
# networks' real 16x112x112, DenseNet needs T >= 16 (its three transitions halve T). Wide
# ResNet-50 is the bottleneck of resnet-50 with other widths: the manifest test checks its keys
# and shapes (its logits cost ~25 s).
CASES = [
    ("resnet-18", "A", "resnet-18-kinetics.pth", "module.module.", False, True, (2, 8, 32)),
    ("resnet-18", "B", "r3d18_K_200ep.pth", "", True, False, (1, 16, 112)),
    ("resnet-50", "B", "resnet-50-kinetics.pth", "module.", False, False, (2, 8, 32)),
    ("resnext-101", "B", "resnext-101-kinetics.pth", "", True, False, (2, 8, 32)),
    ("preresnet-18", "A", "preresnet-18-kinetics.pth", "module.", False, True, (2, 8, 32)),
    ("preresnet-50", "B", "preresnet-50-kinetics.pth", "module.", False, False, (2, 8, 32)),
    ("densenet-121", None, "densenet-121-kinetics.pth", "module.", False, True, (2, 16, 32)),
]


@pytest.mark.parametrize("name,shortcut,filename,prefix,nbt,legacy,size", CASES)
def test_converted_logits_match_pytorch(tmp_path, name, shortcut, filename, prefix, nbt, legacy,
                                        size):
    torch.manual_seed(0)
    net = randomize_batch_norm(twin(name, shortcut or "B", num_classes=400), seed=1)
    src = tmp_path / filename
    save_like_released(net, src, prefix, nbt, legacy, arch=name)
    meta = convert_checkpoint(src, tmp_path / "out.pdparams", name)  # shortcut read from file
    assert meta["shortcut"] == shortcut and meta["num_classes"] == 400
    options = {"shortcut": shortcut} if shortcut else {}
    paddle_keys = build_model(name, 400, **options).state_dict()
    assert meta["converted_keys"] == len(paddle_keys)
    batch, frames, side = size
    x = np.random.RandomState(3).standard_normal((batch, 3, frames, side, side)).astype(np.float32)
    assert_close_relative(paddle_logits(meta["dst"], x), torch_logits(net, x))


def test_manifest_matches_the_twins_and_the_converter_consumes_exactly_its_keys():
    """tests/manifests/released_checkpoint_keys.json (derived from the reference code's module
    structure, with the released files' quirks; see tests/make_converter_manifest.py): the twins
    still produce it, and the converter turns exactly its keys into exactly the Paddle model's
    keys and shapes."""
    from make_converter_manifest import OUT, RELEASED, released_keys

    with open(OUT) as f:
        manifest = json.load(f)
    assert set(manifest["files"]) == set(RELEASED) and "DERIVED" in manifest["derived"]
    for name, entry in manifest["files"].items():
        keys = entry["keys"]
        assert released_keys(entry["model"], entry["shortcut"]) == keys, name
        assert all(k.startswith("module.") and not k.endswith("num_batches_tracked") for k in keys)
        renamed = rename_torch_keys({k: tuple(shape) for k, shape in keys.items()})
        assert len(renamed) == len(keys), name  # nothing dropped, nothing merged
        options = {"shortcut": entry["shortcut"]} if entry["shortcut"] else {}
        with paddle.LazyGuard():
            model = build_model(entry["model"], entry["num_classes"], **options)
        linear = {f"{n}.weight" for n, layer in model.named_sublayers()
                  if isinstance(layer, paddle.nn.Linear)}
        got = {k: list(shape)[::-1] if k in linear else list(shape) for k, shape in renamed.items()}
        assert got == {k: list(v.shape) for k, v in model.state_dict().items()}, name
        if entry["shortcut"]:
            assert infer_shortcut(renamed) == entry["shortcut"], name
    dense = manifest["files"]["densenet-121-kinetics.pth"]["keys"]
    assert "module.features.denseblock1.denselayer1.norm.1.running_mean" in dense


def test_cli_verify_prints_logits_matching_pytorch(tmp_path, capsys):
    torch.manual_seed(1)
    net = randomize_batch_norm(twin("resnet-18", "A", num_classes=10), seed=2)
    src = tmp_path / "resnet-18-kinetics.pth"
    save_like_released(net, src, "module.", False)
    cli = load_cli("data_tools/convert_pretrained.py")
    dst = tmp_path / "r18.pdparams"
    assert cli.main(["--src", str(src), "--dst", str(dst), "--model", "resnet-18",
                     "--verify"]) == 0
    out = capsys.readouterr().out
    printed = out.split("logits[:10]:")[1].split("]")[0].strip(" [\n")
    logits = np.array([float(v) for v in printed.split(",")])
    want = torch_logits(net, verification_input())[0]
    assert_close_relative(logits, want, rel=1e-4 + 2e-6)  # printed with 6 decimals
    np.testing.assert_allclose(converted_model_logits(str(dst)), want,
                               atol=1e-4 * np.abs(want).max())
    meta = json.load(open(tmp_path / "r18.meta.json"))
    assert meta["model"] == "resnet-18" and meta["shortcut"] == "A"
    assert meta["num_classes"] == 10 and meta["source"] == str(src)
    assert meta["normalization"] == {"mean": [114.7748, 107.7354, 99.475], "std": None}


def test_normalisation_follows_the_file_and_can_be_overridden(tmp_path):
    net = twin("resnet-18", "B", num_classes=5)
    new_style = tmp_path / "r3d18_K_200ep.pth"
    save_like_released(net, new_style)
    meta = convert_checkpoint(new_style, tmp_path / "a.pdparams", "resnet-18")
    np.testing.assert_allclose(meta["normalization"]["mean"],
                               np.array([0.4345, 0.4051, 0.3775]) * 255)
    np.testing.assert_allclose(meta["normalization"]["std"],
                               np.array([0.2768, 0.2713, 0.2737]) * 255)
    meta = convert_checkpoint(new_style, tmp_path / "b", "resnet-18", norm="imagenet")
    assert meta["dst"].endswith("b.pdparams") and os.path.exists(tmp_path / "b.meta.json")
    np.testing.assert_allclose(meta["normalization"]["mean"], [123.675, 116.28, 103.53])
    unknown = tmp_path / "my_weights.pth"
    save_like_released(net, unknown)
    with pytest.raises(ValueError, match="--norm"):
        convert_checkpoint(unknown, tmp_path / "c.pdparams", "resnet-18")
    assert not os.path.exists(tmp_path / "c.pdparams")


def test_wrong_model_shortcut_or_classes_list_the_keys(tmp_path, capsys):
    net = twin("resnet-18", "B", num_classes=7)
    src = tmp_path / "resnet-18-kinetics.pth"
    save_like_released(net, src, "module.", False)
    with pytest.raises(StateDictMismatch) as err:
        convert_checkpoint(src, tmp_path / "x.pdparams", "resnet-18", shortcut="A")
    assert "unexpected (15)" in str(err.value) and "layer2.0.downsample.0.weight" in str(err.value)
    with pytest.raises(StateDictMismatch) as err:
        convert_checkpoint(src, tmp_path / "x.pdparams", "resnet-34")
    assert "missing" in str(err.value) and "layer3.5.conv1.weight" in str(err.value)
    with pytest.raises(StateDictMismatch, match=r"mis-shaped: fc.weight: file \[512, 7\]"):
        convert_checkpoint(src, tmp_path / "x.pdparams", "resnet-18", num_classes=101)
    cli = load_cli("data_tools/convert_pretrained.py")
    assert cli.main(["--src", str(src), "--dst", str(tmp_path / "x.pdparams"),
                     "--model", "resnet-50"]) == 2
    assert "mis-shaped" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x.pdparams")


def densenet_torch_name(paddle_key):
    """Paddle key -> the released CVPR2018 DenseNet key (dotted dense-layer names)."""
    key = paddle_key
    for part in ("norm1", "norm2", "conv1", "conv2"):
        key = key.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
    return key.replace("._mean", ".running_mean").replace("._variance", ".running_var")


def test_densenet_old_names_convert(tmp_path):
    with paddle.LazyGuard():
        shapes = {k: list(v.shape) for k, v in build_model("densenet-121", 400).state_dict().items()}
    rng = np.random.RandomState(0)
    expected = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    released = {}
    for key, value in expected.items():
        value = value.T if key == "classifier.weight" else value  # PyTorch Linear: [out, in]
        released["module." + densenet_torch_name(key)] = torch.from_numpy(np.ascontiguousarray(value))
    assert "module.features.denseblock1.denselayer1.norm.1.weight" in released
    assert "module.features.transition1.norm.running_mean" in released
    src = tmp_path / "densenet-121-kinetics.pth"
    torch.save({"epoch": 1, "arch": "densenet-121", "state_dict": released, "optimizer": {}},
               str(src), _use_new_zipfile_serialization=False)
    meta = convert_checkpoint(src, tmp_path / "d.pdparams", "densenet-121")
    assert meta["shortcut"] is None and meta["converted_keys"] == len(expected)
    converted = restricted_load(tmp_path / "d.pdparams")
    assert sorted(converted) == sorted(expected)
    for key in expected:
        np.testing.assert_array_equal(converted[key], expected[key])
    with pytest.raises(ValueError, match="--shortcut does not apply"):
        convert_checkpoint(src, tmp_path / "e.pdparams", "densenet-121", shortcut="B")


def test_malicious_pth_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "marker"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    src = tmp_path / "resnet-18-kinetics.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "evil": Payload()}, str(src))
    with pytest.raises(ValueError, match="weights-only"):
        convert_checkpoint(src, tmp_path / "x.pdparams", "resnet-18")
    assert not marker.exists()


def test_converted_wide_resnet_logits_match_pytorch_at_half_width(tmp_path):
    """Wide ResNet-50's family (bottleneck with expansion 2, planes x k) at k = 1, half the
    released k = 2 widths: the full-width network costs ~25 s; the manifest test covers its
    released keys and shapes."""
    from torch_twins import ResNet, WideBottleneck

    torch.manual_seed(0)
    net = randomize_batch_norm(ResNet(WideBottleneck, [3, 4, 6, 3], "B", 400, (64, 128, 256, 512)),
                               seed=1)
    src = tmp_path / "wideresnet-50-kinetics.pth"
    save_like_released(net, src, "module.", False, False, arch="wideresnet-50")
    meta = convert_checkpoint(src, tmp_path / "out.pdparams", "wideresnet-50", wide_k=1)
    assert meta["shortcut"] == "B" and meta["options"] == {"wide_k": 1}
    model = build_model("wideresnet-50", 400, shortcut="B", wide_k=1)
    model.set_state_dict(restricted_load(meta["dst"]))
    model.eval()
    x = np.random.RandomState(3).standard_normal((2, 3, 8, 32, 32)).astype(np.float32)
    with paddle.no_grad():
        got = model(paddle.to_tensor(x)).numpy()
    assert_close_relative(got, torch_logits(net, x))
