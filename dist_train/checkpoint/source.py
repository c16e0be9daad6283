"""Weights sources for fine-tuning and evaluation: which file holds the weights of a path, and
what the path records about the network they fit (its model *spec*, models/from_config.py).

A source is one of:
    checkpoint directory   <run.dir>/checkpoints/<tag>/ : model.pdparams; spec from state.json's config
    run directory          <run.dir>/ : its best checkpoint (else the latest)
    export directory       meta.json + network.pdparams (the network's state dict, written by
                           dist_train/deploy/export.py beside the inference model); spec from meta.json
    .pdparams file         weights only; spec from <stem>.meta.json beside it when present
                           (written by data_tools/convert_pretrained.py)
``adopt_source_model`` then makes a config agree with the spec (taking what the config leaves at
its defaults, refusing what it contradicts), raising CheckpointError with the keys named.
Reading only; not collective (every rank reads the same files itself).
"""
from __future__ import annotations

import json
import os

from dist_train.checkpoint.layout import (BEST_FILE, CKPT_DIR, LATEST_FILE, MODEL_FILE, STATE_FILE,
                                          CheckpointError, read_pointer, read_state)
from dist_train.config import SCHEMA, ConfigError, config_from_dict
from dist_train.models.convert import meta_path_for
from dist_train.models.from_config import PretrainedMismatch, adopt_model_spec, model_spec, preset_of

EXPORT_META_FILE = "meta.json"           # the export's description (dist_train/deploy/export.py)
EXPORT_NETWORK_FILE = "network.pdparams"  # the exported network's state dict, for fine-tuning


def _run_checkpoint(path: str) -> str | None:
    """The best (else latest) checkpoint of run directory ``path``, or None if it is not one."""
    root = os.path.join(path, CKPT_DIR)
    if not os.path.isdir(root):
        return None
    for pointer in (BEST_FILE, LATEST_FILE):
        tag = read_pointer(root, pointer)
        if tag:
            return os.path.join(root, tag)
    raise CheckpointError(f"{path}: a run directory without a best or latest checkpoint in {root}")


def resolve_source(path: str) -> tuple[str, str]:
    """(kind, directory or file) of weights source ``path``: kind is checkpoint, export or file.
    A run directory resolves to its best (else latest) checkpoint."""
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, STATE_FILE)):
            return "checkpoint", path
        if os.path.isfile(os.path.join(path, EXPORT_META_FILE)):
            return "export", path
        checkpoint = _run_checkpoint(path)
        if checkpoint is not None:
            return "checkpoint", checkpoint
        if os.path.isfile(os.path.join(path, MODEL_FILE)):  # a bare directory holding model.pdparams
            return "checkpoint", path
        raise CheckpointError(f"--weights {path}: a directory that is neither a checkpoint "
                              f"({STATE_FILE}), a run directory ({CKPT_DIR}/) nor an export "
                              f"({EXPORT_META_FILE})")
    return "file", path


def weights_file(path: str) -> str:
    """The .pdparams file holding the network weights of source ``path``."""
    kind, where = resolve_source(path)
    if kind == "checkpoint":
        return os.path.join(where, MODEL_FILE)
    if kind == "export":
        file_path = os.path.join(where, EXPORT_NETWORK_FILE)
        if not os.path.isfile(file_path):
            meta = _read_json(os.path.join(where, EXPORT_META_FILE))
            raise CheckpointError(f"--weights {path}: this export has no {EXPORT_NETWORK_FILE} (it "
                                  "predates fine-tuning from exports); use the checkpoint it was "
                                  f"exported from ({meta.get('weights', 'see its meta.json')}) or "
                                  "export it again")
        return file_path
    return where


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable or not JSON ({e})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _spec_from_saved_config(saved: dict, origin: str) -> dict:
    """The spec of a checkpoint's saved config (only its model section is read, so a checkpoint
    of a version with other keys elsewhere still works)."""
    model = {k: v for k, v in (saved.get("model") or {}).items() if f"model.{k}" in SCHEMA}
    try:
        return model_spec(config_from_dict({"model": model}, origin))
    except (ConfigError, ValueError) as e:
        raise CheckpointError(f"{origin}: its model config cannot be read ({e})") from e


def _spec_from_meta(meta: dict, origin: str) -> dict:
    """The spec of an export's meta.json or a converted file's .meta.json."""
    try:
        norm = meta["normalization"]
        if isinstance(meta["model"], dict):  # export: {"name", "options"}
            name, options = meta["model"]["name"], dict(meta["model"].get("options") or {})
        else:  # converted weights: "model", "shortcut", "options"
            name, options = meta["model"], dict(meta.get("options") or {})
            if meta.get("shortcut") is not None:
                options["shortcut"] = meta["shortcut"]
        mean, std = list(norm["mean"]), None if norm.get("std") is None else list(norm["std"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{origin}: no model/normalization description ({e!r})") from e
    preset = norm.get("preset")
    return {"name": name, "options": options, "mean": mean, "std": std,
            "preset": preset if preset not in (None, "custom") else preset_of(mean, std),
            "num_classes": meta.get("num_classes")}


def read_source_spec(path: str) -> dict | None:
    """What source ``path`` records about its network, or None (a bare .pdparams file)."""
    kind, where = resolve_source(path)
    if kind == "checkpoint":
        if not os.path.isfile(os.path.join(where, STATE_FILE)):
            return None
        state = read_state(where)
        return _spec_from_saved_config(state.get("config") or {}, os.path.join(where, STATE_FILE))
    if kind == "export":
        meta_path = os.path.join(where, EXPORT_META_FILE)
        return _spec_from_meta(_read_json(meta_path), meta_path)
    meta_path = meta_path_for(where)
    if os.path.isfile(meta_path):
        return _spec_from_meta(_read_json(meta_path), meta_path)
    return None


def adopt_source_model(cfg, path: str | None, include_classes: bool = False):
    """``cfg`` made to agree with what weights source ``path`` records -> (cfg, taken keys).

    Nothing to do for None, a path that does not exist (loading reports it, and a resumed run
    never reads it) or a source that records nothing. model.adopt_pretrained false: every
    difference is an error. A contradiction raises CheckpointError naming each key.
    """
    if not path or not os.path.exists(path):
        return cfg, []
    spec = read_source_spec(path)
    if spec is None:
        return cfg, []
    try:
        return adopt_model_spec(cfg, spec, path, adopt=cfg["model.adopt_pretrained"],
                                include_classes=include_classes)
    except PretrainedMismatch as e:
        raise CheckpointError(str(e)) from e
