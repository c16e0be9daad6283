"""Entry points run as scripts (``python dist_train/train.py``) must not let their own folder
shadow installed top-level modules: dist_train/ holds packages named data, models, dist, ..."""
import os

from helpers import REPO, run_cli

PACKAGE = os.path.join(REPO, "dist_train")
ENTRY_POINTS = ["train", "evaluate", "export", "predict"]


def test_entry_points_drop_their_own_folder_from_sys_path(tmp_path):
    installed = tmp_path / "site"
    (installed / "models").mkdir(parents=True)
    (installed / "models" / "__init__.py").write_text("INSTALLED = True\n")
    # As `python dist_train/<entry>.py` does: the script's folder first on sys.path.
    probe = f"""
import importlib, runpy, sys
sys.path.append({str(installed)!r})
for entry in {ENTRY_POINTS!r}:
    sys.path.insert(0, {PACKAGE!r})
    sys.argv = [entry + ".py", "--help"]
    try:
        runpy.run_path({PACKAGE!r} + "/" + entry + ".py", run_name="__main__")
    except SystemExit:
        pass
    sys.modules.pop("models", None)
    models = importlib.import_module("models")
    print(entry, "installed" if getattr(models, "INSTALLED", False) else models.__file__)
"""
    proc = run_cli(["-c", probe], timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.split(" ")[0] in ENTRY_POINTS]
    assert lines == [f"{entry} installed" for entry in ENTRY_POINTS], proc.stdout[-2000:]
