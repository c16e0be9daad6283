import os

from dist_train.config import markdown_reference, SCHEMA
from helpers import REPO


def test_readme_config_reference_matches_schema():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    block = text.split("<!-- config-reference:begin -->\n", 1)[1].split("<!-- config-reference:end -->", 1)[0]
    assert block == markdown_reference(), "run: python scripts/update_readme.py"
    for key in SCHEMA:
        assert f"`{key}`" in block


def test_ci_runs_the_readme_test_command():
    with open(os.path.join(REPO, ".ci", "run")) as f:
        ci = f.read()
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert "./scripts/test.sh" in ci and "./scripts/test.sh" in readme
    assert "./launch.sh" in readme


def test_readme_benchmark_tables_come_from_the_committed_results():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_report",
                                                  os.path.join(REPO, "benchmarks", "bench_report.py"))
    bench_report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_report)
    table = bench_report.markdown(os.path.join(REPO, "benchmarks", "cpu_2core.json"))
    with open(os.path.join(REPO, "benchmarks", "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert "| JPEG clips / decode bound |" in table
    assert table in readme, ("run: python benchmarks/bench_report.py markdown "
                             "benchmarks/cpu_2core.json, and paste it into benchmarks/README.md")
