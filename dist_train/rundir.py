"""The run directory: resolved config, git commit and installed package versions.

Only rank 0 calls these writers; other ranks read nothing from here until a barrier.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata

import yaml

from dist_train import __version__
# atomic_write_text is re-exported here for the training modules that write run files.
from dist_train.atomic import atomic_write_text
from dist_train.config import Config, ConfigError, config_from_dict, diff_configs

CONFIG_FILE = "config.yaml"
RUN_INFO_FILE = "run_info.json"
REPORTED_PACKAGES = ("paddlepaddle", "paddlepaddle-gpu", "numpy", "opencv-python-headless",
                     "opencv-python", "PyYAML", "visualdl", "matplotlib")


def git_commit() -> str | None:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    try:
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        dirty = ""
    return out.stdout.strip() + ("-dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "dist_train": __version__}
    for name in REPORTED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def load_saved_config(run_dir: str) -> Config | None:
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        try:
            tree = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML ({e}); delete it or choose another run.dir") from e
    return config_from_dict(tree, path)


def prepare_run_dir(cfg: Config, accept_changed_config: bool = False) -> list[str]:
    """Create ``run.dir`` and save the resolved config, git commit and package versions.

    An existing run directory whose saved config differs is an error listing the differences,
    unless ``accept_changed_config`` (the user asked to resume it as is); returns the differences.
    """
    run_dir = cfg["run.dir"]
    saved = load_saved_config(run_dir)
    differences = diff_configs(saved, cfg) if saved is not None else []
    if differences and not accept_changed_config:
        raise ConfigError(
            f"run directory {run_dir} holds a different config ({os.path.join(run_dir, CONFIG_FILE)}):\n"
            + "\n".join(differences)
            + "\nUse another run.dir, restore these values, or pass --accept-config-change to continue "
              "this run with the new values.")
    os.makedirs(run_dir, exist_ok=True)
    atomic_write_text(os.path.join(run_dir, CONFIG_FILE), cfg.to_yaml())
    info = {"git_commit": git_commit(), "packages": package_versions(), "config_changes": differences}
    atomic_write_text(os.path.join(run_dir, RUN_INFO_FILE), json.dumps(info, indent=2) + "\n")
    return differences
