"""Imports run downward only (ARCHITECTURE.md): a dist_train module imports modules of its own
layer or of lower layers; only the CLIs import anything."""
import ast
import os

from helpers import REPO

PACKAGE = os.path.join(REPO, "dist_train")
LAYERS = {
    0: {"compat", "config", "atomic", "logs", "rundir", "safeload", "dist", "host_allreduce",
        "cpu_memory"},
    1: {"data", "models"},
    2: {"sync_bn", "optim", "rng_state", "metrics", "checkpoint", "checkpoint_layout",
        "checkpoint_write", "checkpoint_find", "checkpoint_load", "preempt", "videoeval",
        "eval_report", "export_lib", "predict_lib"},
    3: {"engine"},
}
CLIS = {"train", "evaluate", "export", "predict"}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}


def top_module(path):
    rel = os.path.relpath(path, PACKAGE)
    return rel.split(os.sep)[0].removesuffix(".py")


def imported_modules(path):
    """dist_train top-level modules imported by the file at ``path``."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package_parts = os.path.relpath(os.path.dirname(path), REPO).split(os.sep)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this file's package
                base = package_parts[:len(package_parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module + "." + alias.name for alias in node.names] if module == "dist_train" \
                else [module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "dist_train" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_module_has_a_layer():
    modules = {top_module(os.path.join(PACKAGE, n)) for n in os.listdir(PACKAGE)
               if n.endswith(".py") or os.path.isdir(os.path.join(PACKAGE, n, ""))}
    modules -= {"__init__", "__pycache__"}
    assert modules - CLIS - set(LAYER_OF) == set(), "add new modules to LAYERS (and ARCHITECTURE.md)"


def test_imports_run_downward():
    violations = []
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            importer = top_module(path)
            if importer in CLIS or importer == "__init__":
                continue
            for imported in imported_modules(path):
                if imported in CLIS or LAYER_OF.get(imported, 0) > LAYER_OF[importer]:
                    violations.append(f"{os.path.relpath(path, REPO)} imports {imported}")
    assert violations == []


def test_the_import_scan_sees_relative_and_absolute_imports():
    assert {"checkpoint", "models", "dist"} <= imported_modules(os.path.join(PACKAGE, "videoeval.py"))
    assert {"engine", "models", "config"} <= imported_modules(os.path.join(PACKAGE, "train.py"))
