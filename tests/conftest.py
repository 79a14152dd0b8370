import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # import common, rnn_scripts and the scripts' build_model
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(autouse=True)
def no_script_outlives_its_test():
    """A test that fails while its script runs (or a multi-worker pair that waits for a
    peer forever) would leave the process running, on every later test's cores."""
    from helpers import STARTED

    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.communicate()


# Seconds each test file took (setup, call and teardown of its tests, in the process that
# ran them), printed at the end, so a file that grows slow shows in every run's output.
FILE_SECONDS = {}
SLOW_FILE_SECONDS = 60


def pytest_runtest_logreport(report):
    file = report.nodeid.split("::")[0]
    FILE_SECONDS[file] = FILE_SECONDS.get(file, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    slow = sorted(
        ((s, f) for f, s in FILE_SECONDS.items() if s >= SLOW_FILE_SECONDS), reverse=True
    )
    if slow:
        terminalreporter.write_sep(
            "-", f"test files over {SLOW_FILE_SECONDS} s (their tests' seconds, summed)"
        )
        for seconds, file in slow:
            terminalreporter.write_line(f"{seconds:6.0f} s  {file}")
