"""The configuration schema and its one strict loading path.

Defaults live in ``SCHEMA`` (code); a YAML file lists only what an experiment changes; repeatable
``-o section.key=value`` overrides are parsed as YAML scalars/lists and checked against the same
schema. Unknown keys and wrong types are errors that name the key and the nearest valid key.
"""
from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration problem; the message names the file, line or key and what to do."""


@dataclass(frozen=True)
class Key:
    type: str  # int | float | bool | str | path | list[int] | list[float] | list[str]
    default: Any
    help: str
    choices: tuple | None = None
    nullable: bool = False


KINETICS_MEAN_255 = [110.79750, 103.30050, 96.26250]

# Sections in the order the README documents them.
SCHEMA: dict[str, Key] = {
    # --- run ---
    "run.dir": Key("path", "runs/demo", "run directory: resolved config, logs, VisualDL, checkpoints"),
    # --- model ---
    "model.name": Key("str", "resnet-18", "architecture name from dist_train.models.MODELS"),
    "model.num_classes": Key("int", 101, "number of output classes"),
    "model.shortcut": Key("str", None, "residual shortcut type (null = family default)", ("A", "B"), True),
    "model.conv1_t_size": Key("int", None, "temporal kernel size of the stem (null = 7)", None, True),
    "model.conv1_t_stride": Key("int", None, "temporal stride of the stem (null = 1)", None, True),
    "model.no_max_pool": Key("bool", None, "drop the stem's max pool (null = false)", None, True),
    "model.widen_factor": Key("float", None, "channel multiplier of resnet/preresnet (null = 1)", None, True),
    "model.wide_k": Key("int", None, "width factor k of wideresnet (null = 2)", None, True),
    "model.cardinality": Key("int", None, "groups of resnext (null = 32)", None, True),
    "model.width_mult": Key("float", None, "scale every channel width (tiny test/demo models)", None, True),
    "model.normalization": Key("str", "kinetics", "input normalisation preset, or 'custom' to use model.mean/std",
                               ("activitynet", "kinetics", "imagenet", "custom")),
    "model.mean": Key("list[float]", None, "per-channel mean in 0-255 units (normalization: custom)", None, True),
    "model.std": Key("list[float]", None, "per-channel std in 0-255 units, null = no division (custom)", None, True),
    "model.sync_bn": Key("bool", True, "synchronise BatchNorm statistics across ranks"),
    "model.data_format": Key("str", "NCDHW", "activation layout inside the network", ("NCDHW", "NDHWC")),
    "model.pretrained": Key("path", None, "weights to start from: .pdparams (e.g. converted Kinetics weights), or this project's checkpoint, run or export directory (new head when the class count differs)", None, True),
    "model.adopt_pretrained": Key("bool", True, "take model.name, network options and normalisation from model.pretrained/--weights when they record them (this project's checkpoint, run or export directory, converted weights); a config value other than the default that differs is an error. false: every one must equal the config's"),
    "model.ft_begin_module": Key("str", None, "train only from this module on (e.g. layer4); null = all", None, True),
    "model.pretrained_lr_mult": Key("float", 1.0, "lr multiplier for parameters loaded from model.pretrained"),
    "model.freeze_bn": Key("bool", False, "keep BatchNorm statistics and affine parameters frozen"),
    # --- data ---
    "data.root": Key("path", "data/synthetic/frames", "root of frame folders, raw videos, the packed store or the JPEG store"),
    "data.source": Key("str", "frames", "where clips come from (packed: uint8 store of data_tools/pack_clips.py; jpeg_store: compressed store of data_tools/prepare_jpeg_store.py)", ("frames", "video", "packed", "jpeg_store")),
    "data.frame_template": Key("str", "img_{:05d}.jpg", "file name of frame i (1-based) inside a video folder"),
    "data.video_ext": Key("str", ".avi", "file extension of raw videos (data.source: video; '' when the list paths carry it, as generated Kinetics and own-folder lists do)"),
    "data.train_list": Key("path", "data/synthetic/lists/ucf101_train_split1.txt", "training list"),
    "data.val_list": Key("path", "data/synthetic/lists/ucf101_val_split1.txt", "validation list"),
    "data.test_list": Key("path", None, "list for video-level evaluation (null = data.val_list)", None, True),
    "data.class_index": Key("path", None, "class names, one per line (line 1 = label 0; null = the classes.txt beside the train, val or test list, else each label's class folder)", None, True),
    "data.clip_len": Key("int", 16, "frames per clip (T)"),
    "data.crop_size": Key("int", 112, "spatial side of a clip (H = W)"),
    "data.temporal_stride": Key("int", 1, "take every s-th frame; a clip spans T*s frames"),
    "data.train_crop": Key("str", "multiscale_corner", "training crop: multiscale_corner (the paper's, resized), random_resized, center, or random (a crop_size window of the frame as stored, no resize: needs a short side >= crop_size)",
                           ("multiscale_corner", "random_resized", "center", "random")),
    "data.scales": Key("list[float]", [1.0, 0.8408964, 0.7071068, 0.5946036, 0.5],
                       "multi-scale corner crop scales (fraction of the short side)"),
    "data.hflip": Key("bool", True, "random horizontal flip in training"),
    "data.eval_short_side": Key("int", None, "evaluation resize of the short side (null = crop_size)", None, True),
    "data.val_clips": Key("int", 3, "evenly spaced clips per video in validation"),
    "data.test_crops": Key("int", 1, "spatial crops per clip in video-level evaluation", (1, 3)),
    "data.num_workers": Key("int", 2, "DataLoader worker processes per rank"),
    "data.loader": Key("str", "shm", "batch loader: shm (workers write into shared memory) or stock (paddle.io.DataLoader)", ("shm", "stock")),
    "data.skip_bad_samples": Key("bool", False, "replace unreadable samples by the next index (counted)"),
    # --- train ---
    "train.epochs": Key("int", 200, "training epochs"),
    "train.batch_size": Key("int", 128, "GLOBAL samples per optimizer step (all ranks x accumulation)"),
    "train.accum_steps": Key("int", 1, "micro-steps accumulated per optimizer step"),
    "train.lr": Key("float", 0.1, "learning rate (at train.lr_base_batch if that is set)"),
    "train.lr_base_batch": Key("int", None, "scale lr linearly by batch_size / this (null = no scaling)", None, True),
    "train.seed": Key("int", 0, "seed of initialisation, sampling and augmentation"),
    "train.max_steps": Key("int", None, "stop after this many optimizer steps (null = epochs)", None, True),
    "train.deterministic": Key("bool", False, "deterministic cuDNN algorithms (GPU; slower)"),
    "train.compile": Key("bool", False, "paddle.jit.to_static the training model"),
    "train.cpu_keep_freed_memory": Key("bool", True, "CPU: glibc malloc keeps freed blocks up to "
                                       "32 MiB for reuse (page faults cost Paddle's kernels up to 6x)"),
    "train.nan_check": Key("bool", False, "check loss and gradients for NaN/Inf every step (on in --debug)"),
    # --- optim ---
    "optim.momentum": Key("float", 0.9, "SGD momentum"),
    "optim.dampening": Key("float", 0.0, "momentum dampening (the paper used 0.9), emulated"),
    "optim.nesterov": Key("bool", False, "Nesterov momentum"),
    "optim.weight_decay": Key("float", 1e-3, "L2 weight decay"),
    "optim.no_decay_bn_bias": Key("bool", False, "exclude BatchNorm parameters and biases from weight decay"),
    "optim.clip_grad_norm": Key("float", None, "clip gradients by global norm (null = off)", None, True),
    # --- sched ---
    "sched.name": Key("str", "multistep", "learning-rate schedule", ("constant", "multistep", "cosine", "plateau")),
    "sched.milestones": Key("list[int]", [50, 100, 150], "multistep: epochs at which lr is multiplied by gamma"),
    "sched.gamma": Key("float", 0.1, "multistep/plateau: lr factor"),
    "sched.patience": Key("int", 10, "plateau: validations without improvement of val loss"),
    "sched.min_lr": Key("float", 0.0, "lower bound of the lr (cosine end, plateau floor)"),
    "sched.warmup_epochs": Key("float", 0.0, "linear warmup length in epochs"),
    # --- amp ---
    "amp.enabled": Key("bool", False, "automatic mixed precision (GPU only; CPU logs and runs fp32)"),
    "amp.level": Key("str", "O1", "AMP level", ("O1", "O2")),
    "amp.dtype": Key("str", "float16", "AMP dtype", ("float16", "bfloat16")),
    "amp.init_loss_scale": Key("float", 65536.0, "initial dynamic loss scale (float16)"),
    # --- val / eval ---
    "val.every_epochs": Key("int", 1, "validate every N epochs (0 = never)"),
    "val.batch_size": Key("int", 16, "validation clips per rank per batch"),
    "eval.batch_size": Key("int", 8, "video-level evaluation clips per rank per batch"),
    "eval.topk": Key("int", 5, "predictions kept per video in the report"),
    "eval.protocol": Key("str", "paper", "video-level clips: paper (non-overlapping clips covering each video, data.test_crops crops; the paper's numbers) or 10x3 (10 evenly spaced clips x 3 crops, the common Kinetics protocol)", ("paper", "10x3")),
    # --- checkpoints ---
    "ckpt.every_epochs": Key("int", 1, "save a checkpoint every N epochs (0 = off)"),
    "ckpt.every_steps": Key("int", 0, "save a checkpoint every N optimizer steps (0 = off)"),
    "ckpt.keep_last": Key("int", 3, "number of recent checkpoints kept (the best is kept too)"),
    # --- logging ---
    "log.every_steps": Key("int", 10, "log a training line every N optimizer steps"),
    "log.visualdl": Key("bool", True, "write VisualDL scalars under <run.dir>/vdl"),
    "log.curves": Key("bool", True, "rank 0 redraws <run.dir>/curves.png (+ curves.json) after "
                      "each validation and at the end, in a child process"),
    # --- export ---
    "export.at_end": Key("bool", True, "export the best model at the end of training"),
    "export.format": Key("str", "auto", "inference format: pir (.json, Paddle 3), legacy (.pdmodel, "
                         "readable by 2.x) or auto (pir on Paddle 3, legacy on 2.x)", ("auto", "pir", "legacy")),
}


# Lower bounds, checked with the types: a zero batch or clip length must fail at load time with
# the key's name, not later as a division by zero.
MINIMUM: dict[str, float] = {
    "model.num_classes": 2, "data.clip_len": 1, "data.crop_size": 1, "data.temporal_stride": 1,
    "data.eval_short_side": 1, "data.val_clips": 1, "data.num_workers": 0, "train.epochs": 1,
    "train.batch_size": 1, "train.accum_steps": 1, "train.lr": 0.0, "train.lr_base_batch": 1,
    "train.max_steps": 1, "optim.momentum": 0.0, "optim.dampening": 0.0, "optim.weight_decay": 0.0,
    "optim.clip_grad_norm": 0.0, "sched.gamma": 0.0, "sched.patience": 0, "sched.min_lr": 0.0,
    "sched.warmup_epochs": 0.0, "amp.init_loss_scale": 1.0, "val.every_epochs": 0,
    "val.batch_size": 1, "eval.batch_size": 1, "eval.topk": 1, "ckpt.every_epochs": 0,
    "ckpt.every_steps": 0, "ckpt.keep_last": 0, "log.every_steps": 1,
}


class Section:
    """Attribute view of one config section (``cfg.train.lr``)."""

    def __init__(self, values: dict[str, Any]):
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"Section({self.__dict__})"


class Config:
    """Resolved configuration: ``cfg["train.lr"]`` or ``cfg.train.lr``; read-only by convention."""

    def __init__(self, flat: dict[str, Any]):
        self._flat = dict(flat)
        sections: dict[str, dict[str, Any]] = {}
        for key, value in self._flat.items():
            section, name = key.split(".", 1)
            sections.setdefault(section, {})[name] = value
        for section, values in sections.items():
            setattr(self, section, Section(values))

    def __getitem__(self, key: str) -> Any:
        if key not in self._flat:
            raise ConfigError(_unknown_key_message(key, "lookup"))
        return self._flat[key]

    def flat(self) -> dict[str, Any]:
        return dict(self._flat)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        nested: dict[str, dict[str, Any]] = {}
        for key, value in self._flat.items():
            section, name = key.split(".", 1)
            nested.setdefault(section, {})[name] = copy.deepcopy(value)
        return nested

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def replace(self, **changes: Any) -> "Config":
        """A copy with ``{"section.key": value}`` changes applied and checked (use ``**{...}``)."""
        flat = dict(self._flat)
        for key, value in changes.items():
            flat[key] = check_value(key, value, "replace()")
        return Config(flat)


def _unknown_key_message(key: str, origin: str) -> str:
    close = difflib.get_close_matches(key, SCHEMA.keys(), n=1, cutoff=0.5)
    if not close:  # a bare key name without its section, or a typo in the section
        name = key.split(".")[-1]
        close = [k for k in SCHEMA if k.split(".", 1)[1] == name] or difflib.get_close_matches(
            key, SCHEMA.keys(), n=1, cutoff=0.0)
    return f"{origin}: unknown config key '{key}'; did you mean '{close[0]}'? (see README, Config reference)"


def check_value(key: str, value: Any, origin: str) -> Any:
    """Return ``value`` converted to the schema type of ``key``, or raise ConfigError."""
    if key not in SCHEMA:
        raise ConfigError(_unknown_key_message(key, origin))
    spec = SCHEMA[key]
    if value is None:
        if spec.nullable:
            return None
        raise ConfigError(f"{origin}: config key '{key}' must not be null; expected {spec.type}")
    converted = _convert(spec.type, value)
    if converted is _BAD:
        raise ConfigError(f"{origin}: config key '{key}' expects {spec.type}, "
                          f"got {type(value).__name__} {value!r}")
    if spec.choices is not None and converted not in spec.choices:
        raise ConfigError(f"{origin}: config key '{key}' must be one of {list(spec.choices)}, got {value!r}")
    minimum = MINIMUM.get(key)
    if minimum is not None and any(v < minimum for v in (converted if isinstance(converted, list) else [converted])):
        raise ConfigError(f"{origin}: config key '{key}' must be >= {minimum:g}, got {value!r}")
    return converted


_BAD = object()
_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _convert(type_name: str, value: Any) -> Any:
    if type_name.startswith("list["):
        if not isinstance(value, (list, tuple)):
            return _BAD
        items = [_convert(type_name[5:-1], v) for v in value]
        return _BAD if any(v is _BAD for v in items) else items
    if type_name == "bool":
        return value if isinstance(value, bool) else _BAD
    if type_name == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else _BAD
    if type_name == "float":
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-3 (no dot) as text
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _BAD
        return float(value)
    if type_name in ("str", "path"):
        if not isinstance(value, str):
            return _BAD
        return os.path.abspath(os.path.expanduser(value)) if type_name == "path" else value
    raise AssertionError(f"schema type {type_name!r} is not handled")


def _flatten(tree: Any, origin: str) -> dict[str, Any]:
    if not isinstance(tree, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections (e.g. 'train: {{lr: 0.1}}'), "
                          f"got {type(tree).__name__}")
    sections = {key.split(".", 1)[0] for key in SCHEMA}
    flat: dict[str, Any] = {}
    for section, values in tree.items():
        if not isinstance(values, dict):
            if section in sections:
                raise ConfigError(f"{origin}: section '{section}' must be a mapping of keys")
            raise ConfigError(_unknown_key_message(str(section), origin))
        for name, value in values.items():
            flat[f"{section}.{name}"] = value
    return flat


def read_yaml(path: str) -> dict[str, Any]:
    """Parse a YAML config file into flat ``{"section.key": value}`` (not yet checked)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path} line {mark.line + 1}, column {mark.column + 1}" if mark else path
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"YAML syntax error in {where}: {problem}") from e
    return _flatten(tree or {}, path)


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=0.01"`` -> ``("train.lr", 0.01)``; the value is parsed as a YAML scalar or list."""
    if "=" not in text:
        raise ConfigError(f"override '-o {text}': expected section.key=value, e.g. -o train.lr=0.01")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override '-o {text}': value is not valid YAML ({e})") from e
    if isinstance(value, dict):
        raise ConfigError(f"override '-o {text}': set one key at a time (section.key=value)")
    return key, value


def load_config(path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults <- YAML file <- ``-o`` overrides, every value checked against ``SCHEMA``."""
    flat = {key: copy.deepcopy(spec.default) for key, spec in SCHEMA.items()}
    if path is not None:
        for key, value in read_yaml(path).items():
            flat[key] = check_value(key, value, path)
    for text in overrides:
        key, value = parse_override(text)
        flat[key] = check_value(key, value, f"override '-o {text}'")
    for key, spec in SCHEMA.items():  # defaults of path keys become absolute too
        if spec.type == "path" and isinstance(flat[key], str):
            flat[key] = os.path.abspath(os.path.expanduser(flat[key]))
    return Config(flat)


def config_from_dict(nested: dict[str, Any], origin: str) -> Config:
    """Rebuild a Config from a saved ``to_dict()`` (checkpoints, run directories); checked strictly."""
    flat = {key: copy.deepcopy(spec.default) for key, spec in SCHEMA.items()}
    for key, value in _flatten(nested, origin).items():
        flat[key] = check_value(key, value, origin)
    return Config(flat)


def diff_configs(old: Config, new: Config) -> list[str]:
    """Human-readable differences, one line per key."""
    lines = []
    a, b = old.flat(), new.flat()
    for key in SCHEMA:
        if a.get(key) != b.get(key):
            lines.append(f"  {key}: {a.get(key)!r} -> {b.get(key)!r}")
    return lines


def markdown_reference() -> str:
    """The README's config reference table, generated from SCHEMA (a test keeps them equal)."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, spec in SCHEMA.items():
        type_text = spec.type + (f" >= {MINIMUM[key]:g}" if key in MINIMUM else "") + (" or null" if spec.nullable else "")
        if spec.choices:
            type_text += ": " + " \\| ".join(str(c) for c in spec.choices)
        default = "null" if spec.default is None else yaml.safe_dump(spec.default, default_flow_style=True).strip()
        default = default.removesuffix("\n...").strip()
        rows.append(f"| `{key}` | {type_text} | `{default}` | {spec.help} |")
    return "\n".join(rows) + "\n"
