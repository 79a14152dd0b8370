import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # import common, rnn_scripts and the scripts' build_model
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session", autouse=True)
def tensorflow_threads_as_a_run_sets_them():
    """The scripts run in this process (helpers.run_here) share its TensorFlow, whose
    threads are fixed by the first operation it runs, wherever that is: set them as run()
    sets them for a script, before any test runs one."""
    from rnn_scripts.environment import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    from rnn_scripts.devices import cpu_threads

    threads = cpu_threads(None)
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)


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


# --------------------------------------------------------------------------------------
# Finished runs of each kind, trained once per test process on first use and shared by the
# files that only read them (predict.py, export, hostile inputs, the README's snippet)
# --------------------------------------------------------------------------------------
def _train(folder, script, *args):
    from helpers import explain, run_here

    result = run_here(script, *args, "--output-dir", folder / "run", cwd=folder)
    assert result.returncode == 0, explain(result)
    return folder / "run"


def _sequences(folder):
    from files import write_sequences_npz

    write_sequences_npz(folder / "my.npz")
    args = [
        "--data",
        folder / "my.npz",
        "--epochs",
        "4",
        "--units",
        "16",
        "--num-layers",
        "1",
    ]
    return _train(folder, "train_lstm.py", *args)


def _texts(folder):
    from files import write_sentences_csv

    write_sentences_csv(folder / "s.csv")
    args = [
        "--data",
        folder / "s.csv",
        "--epochs",
        "4",
        "--units",
        "8",
        "--max-length",
        "16",
    ]
    return _train(folder, "train_imdb_bilstm.py", *args)


def _images(folder):
    args = ["--synthetic", "--limit", "1800", "--epochs", "3", "--units", "32"]
    args += ["--num-layers", "1", "--learning-rate", "0.01"]
    return _train(folder, "train_gru.py", *args)


def _two_classes(folder):
    """Two named classes, and a model that ends in one logit (a user's sigmoid model)."""
    import numpy as np

    from files import separable_sequences
    from helpers import copy_script

    x, y = separable_sequences(400, classes=2, seed=3)
    names = np.array(["no", "yes"])
    arrays = {
        "x_train": x[:320],
        "y_train": y[:320],
        "x_test": x[320:],
        "y_test": y[320:],
    }
    np.savez(folder / "two.npz", **arrays, class_names=names)
    one_logit = lambda s: s.replace("Dense(outputs,", "Dense(1,")  # noqa: E731
    script = copy_script("train_lstm.py", folder, one_logit, "train_one_logit.py")
    args = ["--data", folder / "two.npz", "--epochs", "6", "--units", "8"]
    return _train(folder, script, *args, "--num-layers", "1", "--learning-rate", "0.01")


def _regression(folder):
    from files import write_regression

    write_regression(folder / "values.npz")
    args = ["--data", folder / "values.npz", "--epochs", "3", "--units", "16"]
    return _train(
        folder, "train_lstm.py", *args, "--num-layers", "1", "--learning-rate", "0.01"
    )


SERIES = ["--target", "temp", "--window", "12", "--horizon", "2"]


def _series(folder):
    from files import write_series

    write_series(folder / "weather.csv")
    args = ["--data", folder / "weather.csv", *SERIES, "--epochs", "4", "--units", "16"]
    return _train(
        folder, "train_lstm.py", *args, "--num-layers", "1", "--learning-rate", "0.01"
    )


def _word_ids(folder):
    args = [
        "--synthetic",
        "--smoke",
        "--units",
        "4",
        "--vocab-size",
        "500",
        "--max-length",
        "30",
    ]
    return _train(folder, "train_imdb_bilstm.py", *args)


FINISHED = {
    "sequences": _sequences,
    "texts": _texts,
    "images": _images,
    "two classes": _two_classes,
    "regression": _regression,
    "word ids": _word_ids,
    "series": _series,
}


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """finished(kind) -> the folder of a finished run of that kind (FINISHED): leave it
    as it is (copy it to change it)."""
    runs = {}

    def get(kind):
        if kind not in runs:
            runs[kind] = FINISHED[kind](tmp_path_factory.mktemp(kind.replace(" ", "-")))
        return runs[kind]

    return get


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
