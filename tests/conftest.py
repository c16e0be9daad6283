"""Suite-wide rules: a skipped test or a selected test that did not pass fails the run."""
from __future__ import annotations

import os

import pytest

_outcomes = {"passed": 0, "skipped": [], "other": []}


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed:
        _outcomes["passed"] += 1
    elif report.skipped:
        _outcomes["skipped"].append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if exitstatus != 0 or os.environ.get("DIST_TRAIN_ALLOW_SKIPS") == "1":
        return
    selected = len(session.items)
    minimum = int(os.environ.get("DIST_TRAIN_MIN_TESTS", "1"))
    problems = []
    if _outcomes["skipped"]:
        problems.append(f"{len(_outcomes['skipped'])} test(s) skipped: {_outcomes['skipped'][:5]}")
    if _outcomes["passed"] != selected:
        problems.append(f"{_outcomes['passed']} passed of {selected} selected")
    if selected < minimum:
        problems.append(f"only {selected} tests selected, expected at least {minimum}")
    if problems:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            "conftest: suite rules violated: " + "; ".join(problems), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
