"""Imports run downward only (ARCHITECTURE.md): a dist_train module imports modules of a lower
layer or of its own package, never a sibling package of its layer and never an entry point."""
import ast
import os

from helpers import REPO

PACKAGE = os.path.join(REPO, "dist_train")
# Layer -> packages (or modules) it holds, dotted below dist_train; the longest prefix decides.
LAYERS = {
    0: {"basics": {"__init__", "errors", "config", "compat", "atomic", "logs", "safeload", "rundir",
                   "cpu_memory"}},
    1: {"dist": {"dist"}},
    2: {"data": {"data"}, "models": {"models"}},
    3: {"data.prepare": {"data.prepare"}},  # offline builders, on top of the online data layer
    4: {"checkpoint": {"checkpoint"}},  # loads weights through models
    5: {"training": {"training"}, "evaluation": {"evaluation"}},
    6: {"deploy": {"deploy"}},  # uses evaluation's clip sampling and model loading
    7: {"entry points": {"train", "evaluate", "export", "predict"}},
}
PREFIXES = {prefix: (layer, group) for layer, groups in LAYERS.items()
            for group, prefixes in groups.items() for prefix in prefixes}


def place(dotted: str):
    """(layer, group) of a module dotted below dist_train (``data.prepare.extract``)."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in PREFIXES:
            return PREFIXES[".".join(parts[:n])]
    return None


def module_name(path: str) -> str:
    rel = os.path.relpath(path, PACKAGE)[:-len(".py")].split(os.sep)
    if rel[-1] == "__init__" and len(rel) > 1:
        rel = rel[:-1]
    return ".".join(rel)


def is_module(dotted: str) -> bool:
    base = os.path.join(PACKAGE, *dotted.split("."))
    return os.path.isfile(base + ".py") or os.path.isfile(os.path.join(base, "__init__.py"))


def imported_modules(path: str, source: str | None = None) -> set[str]:
    """Modules of dist_train (dotted below it) that the file at ``path`` imports."""
    source = open(path, encoding="utf-8").read() if source is None else source
    tree = ast.parse(source, path)
    package = os.path.relpath(os.path.dirname(path), REPO).split(os.sep)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this file's package
                module = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module + "." + alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "dist_train" or len(parts) < 2:
                continue
            dotted = ".".join(parts[1:])
            while "." in dotted and not is_module(dotted):  # `from pkg import function`
                dotted = dotted.rsplit(".", 1)[0]
            found.add(dotted if is_module(dotted) else "__init__")  # `from dist_train import __version__`
    return found


def all_modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(folder, name)


def violations_of(path: str, source: str | None = None) -> list[str]:
    importer_layer, importer_group = place(module_name(path))
    found = []
    for imported in sorted(imported_modules(path, source)):
        where = place(imported)
        if where is None:
            found.append(f"{imported} has no layer")
            continue
        layer, group = where
        if layer > importer_layer or (layer == importer_layer and group != importer_group
                                      and importer_layer != 0):
            found.append(f"{os.path.relpath(path, REPO)} (layer {importer_layer} {importer_group}) "
                         f"imports {imported} (layer {layer} {group})")
    return found


def test_every_module_has_a_layer():
    unplaced = [os.path.relpath(p, REPO) for p in all_modules() if place(module_name(p)) is None]
    assert unplaced == [], "add new modules to LAYERS (and ARCHITECTURE.md)"


def test_imports_run_downward():
    violations = [v for path in all_modules() for v in violations_of(path)]
    assert violations == []


def test_the_scan_sees_relative_absolute_and_nested_imports():
    assert {"checkpoint", "models.from_config", "dist", "data.factory"} <= imported_modules(
        os.path.join(PACKAGE, "evaluation", "video_level.py"))
    assert {"training.loop", "errors", "deploy.export"} <= imported_modules(os.path.join(PACKAGE, "train.py"))
    engine = os.path.join(PACKAGE, "training", "engine.py")
    assert {"checkpoint.layout", "training.optim"} <= imported_modules(
        engine, "from ..checkpoint import layout\nfrom . import optim\n")


def test_a_later_layer_or_a_sibling_package_is_a_violation():
    engine = os.path.join(PACKAGE, "training", "engine.py")
    assert violations_of(engine, "from dist_train.deploy.export import export_model\n")
    assert violations_of(engine, "from dist_train.evaluation import video_level\n")  # sibling
    assert violations_of(os.path.join(PACKAGE, "data", "readers.py"), "from .prepare import extract\n")
    assert violations_of(os.path.join(PACKAGE, "dist", "sync_bn.py"), "import dist_train.train\n")
    assert not violations_of(engine, "from dist_train.checkpoint import layout\nfrom . import optim\n")
