"""Each script end to end, as a user runs it: --smoke (the smoke tier), what it wrote, and the
pictures checked against the data they were drawn from. The scripts run in this test
process (helpers.run_here: their own file as __main__); what is about a process of its own
(the backend's start-up noise, a closed stdout, a restart for another backend) runs as one.
"""

import csv
import json
import re

import numpy as np
import pytest

from helpers import (
    MNIST_SCRIPTS,
    RUN_FILES,
    SCRIPTS,
    copy_script,
    explain,
    read_history,
    read_metrics,
    run_here,
    run_script,
)
from rnn_scripts import outputs
from rnn_scripts.cli import SINGLE_THREAD_MAX_CORES

OFFLINE = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """Every script's --smoke, once, as the README tells a user to check a script."""
    runs = {}

    def run(script):
        if script not in runs:
            out = tmp_path_factory.mktemp(script.removesuffix(".py")) / "run"
            runs[script] = (run_here(script, "--smoke", "--output-dir", out), out)
        return runs[script]

    return run


@pytest.mark.smoke
@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_run_exits_0_and_writes_every_output_and_no_lock(smoke_runs, script):
    result, out = smoke_runs(script)
    assert result.returncode == 0, explain(result)
    expected = RUN_FILES - ({"samples.png"} if script not in MNIST_SCRIPTS else set())
    assert {p.name for p in out.iterdir()} == expected  # no partial file, no .lock
    kept = [p.name for p in (out / "training-state").iterdir()]
    assert kept == ["epoch-0001.npz"]  # the last epoch's state: --epochs N continues it
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line.startswith("test accuracy ") and f"-> {out}" in last_line
    assert result.stderr.strip() == "", explain(result)


def test_a_gated_model_learns_the_real_digits_in_two_epochs(tmp_path):
    """The shipped sample of real MNIST digits (chance is 0.10)."""
    args = ["--dataset", "mnist-sample", "--limit", "1200", "--epochs", "2"]
    args += ["--units", "32", "--num-layers", "1", "--learning-rate", "0.01"]
    result = run_here("train_gru.py", *args, "--output-dir", tmp_path / "run")
    assert result.returncode == 0, explain(result)
    assert read_metrics(tmp_path / "run")["test_accuracy"] > 0.35


@pytest.mark.smoke
@pytest.mark.parametrize("script", SCRIPTS)
def test_metrics_json_records_the_run_and_what_the_libraries_did(smoke_runs, script):
    import os

    result, out = smoke_runs(script)
    metrics = read_metrics(out)
    assert 0 <= metrics["test_accuracy"] <= 1 and np.isfinite(metrics["test_loss"])
    assert metrics["epochs_run"] == 1 and metrics["seconds_per_epoch"] > 0
    assert metrics["train_samples_per_second"] > 0 and metrics["parameters"] > 0
    assert metrics["train_examples"] == 270 and metrics["validation_examples"] == 30
    assert metrics["test_examples"] == 50
    assert metrics["backend"] == "tensorflow" and metrics["device"].startswith("CPU")
    assert set(metrics["versions"]) >= {"python", "keras", "tensorflow", "numpy"}
    settings = metrics["settings_in_effect"]
    assert (
        settings["steps_per_execution"] == 16 and settings["compute_dtype"] == "float32"
    )
    assert settings["tensorflow_op_determinism"] is False
    single = os.cpu_count() <= SINGLE_THREAD_MAX_CORES
    assert settings["cpu_threads_per_op"] == (1 if single else 0)
    assert (
        metrics["arguments"]["smoke"] is True
        and metrics["arguments"]["batch_size"] == 64
    )
    # --smoke alone: the shipped digits, or generated reviews (offline, at once)
    assert metrics["dataset"]["synthetic"] == (script == "train_imdb_bilstm.py")
    assert metrics["dataset"]["sample"] == (script != "train_imdb_bilstm.py")
    assert f"{metrics['test_accuracy']:.4f}" in result.stdout.splitlines()[-1]


@pytest.mark.parametrize("script", SCRIPTS)
def test_history_csv_has_one_row_per_epoch_with_every_metric(smoke_runs, script):
    _, out = smoke_runs(script)
    with open(out / "history.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 1 and rows[0]["epoch"] == "1"
    assert list(rows[0]) == [
        "epoch",
        "accuracy",
        "loss",
        "val_accuracy",
        "val_loss",
        "learning_rate",
        "seconds",
    ]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds"):
        assert np.isfinite(float(rows[0][key]))
    assert float(rows[0]["learning_rate"]) == pytest.approx(0.001)


@pytest.mark.parametrize("script", SCRIPTS)
def test_per_class_accuracy_and_confusion_agree_with_the_test_accuracy(
    smoke_runs, script
):
    _, out = smoke_runs(script)
    metrics = read_metrics(out)
    counts = np.array(metrics["confusion_matrix"])
    assert counts.sum() == metrics["test_examples"]
    assert np.trace(counts) / counts.sum() == pytest.approx(
        metrics["test_accuracy"], abs=1e-6
    )
    per_class = metrics["per_class_accuracy"]
    assert list(per_class) == metrics["dataset"]["classes"]
    for i, accuracy in enumerate(per_class.values()):
        if counts[i].sum():
            assert accuracy == pytest.approx(counts[i, i] / counts[i].sum())
        else:
            assert accuracy is None


def test_saved_models_reproduce_the_test_scores_on_examples_read_independently(
    smoke_runs,
):
    """The smoke test split is the first 50 test digits of the shipped sample: read here
    from the file, run through each saved model, scored against metrics.json."""
    from rnn_scripts.data.official import sample_file
    from rnn_scripts.serving import TrainedRun

    _, out = smoke_runs("train_lstm.py")
    metrics = read_metrics(out)
    assert metrics["reloaded_model_max_difference"] < 1e-5
    with np.load(sample_file()) as sample:
        x, y = sample["x_test"][:50], sample["y_test"][:50]
    scores = {
        "final": metrics["test_accuracy"],
        "best": metrics["best_model"]["test_accuracy"],
    }
    for model, accuracy in scores.items():
        found = TrainedRun(out, model=model).predict(x)
        assert np.mean(found.class_ids == y) == pytest.approx(accuracy, abs=1e-6)
    assert metrics["best_model"]["epoch"] == 1


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_start_up_names_a_clearly_faster_backend_as_the_docs_measured_it(
    smoke_runs, script
):
    from helpers import documented_speeds

    result, _ = smoke_runs(script)
    speeds = documented_speeds()[script.removeprefix("train_").removesuffix(".py")]
    keras_backends = {b: s for b, s in speeds.items() if b != "pytorch"}
    fastest = max(keras_backends, key=keras_backends.get)
    notes = [line for line in result.stdout.splitlines() if line.startswith("note: ")]
    ratio = keras_backends[fastest] / keras_backends["tensorflow"]
    if ratio < 1.2:
        assert notes == []
    else:
        kernels = " with its fused kernels" if fastest == "torch" else ""
        assert notes == [
            f"note: on a 2-core CPU the {fastest} backend{kernels} trained this model "
            f"{ratio:.1f}x faster (docs/performance.md): --backend {fastest}"
        ]


@pytest.mark.smoke
def test_a_smoke_run_without_output_dir_writes_nothing_that_stays(tmp_path):
    """The line for a copied script's own CI: one epoch, exit 0, nothing left behind."""
    result = run_here("train_gru.py", "--smoke", "--units", "8", cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    assert (
        result.stdout.strip()
        .splitlines()[-1]
        .endswith("its temporary folder is removed)")
    )
    assert "270 train, 30 validation, 50 test examples" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_failing_smoke_run_exits_non_zero(tmp_path):
    wide = copy_script(
        "train_gru.py",
        tmp_path,
        lambda s: s.replace("Dense(outputs,", "Dense(3,"),
        "t.py",
    )
    result = run_here(wide, "--smoke", "--units", "4", cwd=tmp_path)
    assert result.returncode == 1 and "3 units but the data have 10" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["common.py", "t.py"]


# --------------------------------------------------------------------------------------
# The pictures, from the data they were drawn from
# --------------------------------------------------------------------------------------
def test_samples_show_mistakes_first_but_right_predictions_too():
    y_true = np.arange(100) % 10
    y_predicted = y_true.copy()
    y_predicted[:40] = (y_true[:40] + 1) % 10  # 40 mistakes: more than the 24 shown
    shown = outputs.samples_shown(y_true, y_predicted)
    assert len(shown) == 24
    assert list(shown[:12]) == list(range(12))
    assert (y_predicted[shown[:12]] != y_true[shown[:12]]).all()
    assert (y_predicted[shown[12:]] == y_true[shown[12:]]).all()
    few = y_true.copy()
    few[[5, 51]] = 0
    shown = outputs.samples_shown(y_true, few)
    # both mistakes, then right ones
    assert list(shown[:2]) == [5, 51] and len(shown) == 24
    all_wrong = outputs.samples_shown(y_true[:30], (y_true[:30] + 1) % 10)
    assert list(all_wrong) == list(range(24))  # no right one to show


def test_the_samples_picture_titles_each_shown_example_with_its_classes():
    names = [str(d) for d in range(10)]
    y_true = np.arange(30) % 10
    y_predicted = np.where(np.arange(30) < 3, (y_true + 1) % 10, y_true)
    figure = outputs.samples_figure(np.zeros((30, 4, 4)), y_true, y_predicted, names)
    titles = [text.get_text() for text in figure.axes[0].texts]
    assert titles[:3] == ["1 (true 0)", "2 (true 1)", "3 (true 2)"]
    assert titles[3:] == [str(i % 10) for i in range(3, 24)]


def test_the_confusion_picture_shows_the_counts_it_was_given():
    counts = np.array([[5, 1, 0], [2, 7, 0], [0, 3, 9]])
    figure = outputs.confusion_figure(counts, ["a", "b", "c"])
    shown = {
        (round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text())
        for t in figure.axes[0].texts
    }
    assert shown == {(i, j): int(counts[i, j]) for i in range(3) for j in range(3)}
    np.testing.assert_array_equal(figure.axes[0].images[0].get_array(), counts)


def test_the_curves_mark_the_epoch_best_keras_holds():
    rows = [
        {
            "epoch": e,
            "loss": 1 / e,
            "accuracy": e / 10,
            "val_loss": 1 / e,
            "val_accuracy": a,
            "learning_rate": 0.001,
            "seconds": 1,
        }
        for e, a in zip((1, 2, 3, 4), (0.5, 0.8, 0.7, 0.6))
    ]
    figure = outputs.curves_figure(rows, best_epoch=2)
    assert [axis.get_title() for axis in figure.axes] == ["loss", "accuracy"]
    for axis in figure.axes:
        marks = [
            line
            for line in axis.get_lines()
            if line.get_label() == "best.keras (epoch 2)"
        ]
        assert len(marks) == 1 and list(marks[0].get_xdata()) == [2, 2]
        # whole epochs
        assert all(float(tick) == int(tick) for tick in axis.get_xticks())
    accuracy = figure.axes[1].get_lines()[1]
    assert list(accuracy.get_ydata()) == [0.5, 0.8, 0.7, 0.6]  # the validation accuracy


def test_a_run_draws_its_curves_with_its_best_epoch(tmp_path):
    out = tmp_path / "run"
    result = run_here(
        "train_gru.py",
        *("--synthetic", "--limit", "300", "--units", "4", "--epochs", "3"),
        *("--output-dir", out),
    )
    assert result.returncode == 0, explain(result)
    epoch_lines = [
        line for line in result.stdout.splitlines() if re.match(r"^\d+/\d+ - ", line)
    ]
    assert len(epoch_lines) == 3 and all(
        line.startswith("5/5 - ") for line in epoch_lines
    )
    assert "\r" not in result.stdout and "\x08" not in result.stdout  # no progress bar
    metrics = read_metrics(out)
    best = max(read_history(out), key=lambda row: row["val_accuracy"])["epoch"]
    assert metrics["best_epoch"] == best == metrics["best_model"]["epoch"]


# --------------------------------------------------------------------------------------
# Offline, quiet, and copied as a template
# --------------------------------------------------------------------------------------
def test_without_network_mnist_falls_back_to_the_shipped_sample(tmp_path):
    out = tmp_path / "run"
    args = ["--limit", "120", "--epochs", "1", "--units", "4", "--output-dir", out]
    result = run_here("train_lstm.py", *args, env=OFFLINE)
    assert result.returncode == 0, explain(result)
    assert "could not download MNIST" in result.stdout
    assert "training on the 5,000-digit sample instead" in result.stdout
    dataset = read_metrics(out)["dataset"]
    assert dataset["name"] == "mnist-sample" and "download failed" in dataset["note"]


def test_fashion_mnist_offline_without_files_is_one_line_that_leaves_no_folder(tmp_path):
    args = ["--dataset", "fashion_mnist", "--output-dir", tmp_path / "run"]
    result = run_here("train_gru.py", *args, env=OFFLINE)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, explain(result)
    assert "--data-dir" in result.stderr and "--synthetic" in result.stderr
    assert not (
        tmp_path / "run"
    ).exists()  # the refused start removed the folder it made


def test_imdb_without_network_or_file_says_how_to_get_the_data(tmp_path):
    result = run_here(
        "train_imdb_bilstm.py", "--output-dir", tmp_path / "run", env=OFFLINE
    )
    assert result.returncode == 1
    message = result.stderr.strip()
    assert "\n" not in message and "--data-dir" in message and "--synthetic" in message


def test_backend_startup_noise_is_hidden_unless_verbose(tmp_path):
    """TensorFlow's C++ start-up lines reach the process's stderr before any log level
    applies: a process of its own shows them, or not. A missing file stops each run right
    after the backend has loaded."""
    missing = ["--data", tmp_path / "missing.npz"]
    quiet = run_script("train_gru.py", *missing, cwd=tmp_path)
    loud = run_script("train_gru.py", *missing, "--verbose", cwd=tmp_path)
    assert quiet.returncode == loud.returncode == 1, explain(quiet) + explain(loud)
    assert quiet.stderr == f"error: {tmp_path / 'missing.npz'}: file not found\n"
    assert "I0000" in loud.stderr or "oneDNN" in loud.stderr  # the noise that was hidden
    assert quiet.stdout.splitlines()[0].startswith("backend tensorflow ")


def test_a_model_that_is_not_keras_or_does_not_fit_the_data_is_one_line(tmp_path):
    bad = copy_script(
        "train_lstm.py",
        tmp_path,
        lambda s: s.replace("return model", "return None"),
        "b.py",
    )
    wide = copy_script(
        "train_lstm.py",
        tmp_path,
        lambda s: s.replace("Dense(outputs,", "Dense(7,"),
        "w.py",
    )
    for script, words in (
        (bad, "must return a Keras model"),
        (wide, "7 units but the data have 10"),
    ):
        result = run_here(
            script, "--synthetic", "--limit", "60", "--units", "4", cwd=tmp_path
        )
        assert result.returncode == 1, explain(result)
        assert words in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_a_copied_script_runs_with_its_own_name_in_its_own_folder(tmp_path):
    """Its function renamed too: the run and its resume hint carry the script's name."""
    rename = lambda s: s.replace("build_model", "make_model")  # noqa: E731
    script = copy_script("train_gru.py", tmp_path, rename, name="train_my_model.py")
    assert "def make_model(" in script.read_text()
    args = [
        "--dataset",
        "mnist-sample",
        "--limit",
        "120",
        "--units",
        "4",
        "--epochs",
        "1",
    ]
    result = run_here(script, *args, cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("train_my_model-")
    saved = json.loads((runs[0] / "args.json").read_text())
    assert saved["script"] == "train_my_model.py"
    assert read_metrics(runs[0])["dataset"]["sample"]
    assert read_history(runs[0])[0]["epoch"] == 1


def test_a_copied_script_that_imports_keras_at_its_top_still_takes_backend(tmp_path):
    """Keras loaded with TensorFlow before run(): the script starts again with --backend's."""
    pytest.importorskip("jax")
    top = lambda s: s.replace("import common\n", "import common\nimport keras\n")  # noqa: E731
    script = copy_script("train_gru.py", tmp_path, top, "train_top.py")
    args = [
        "--synthetic",
        "--limit",
        "60",
        "--units",
        "4",
        "--epochs",
        "1",
        "--backend",
        "jax",
    ]
    result = run_script(script, *args, "--output-dir", tmp_path / "run", cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    assert result.stdout.startswith("backend jax ")
    assert read_metrics(tmp_path / "run")["backend"] == "jax"


def test_a_closed_stdout_or_a_reader_that_stops_early_does_not_stop_training(tmp_path):
    import subprocess
    import sys

    from helpers import ROOT, script_env

    command = f"{sys.executable} {ROOT / 'train_gru.py'} --synthetic --limit 120 --units 4 --epochs 2"
    shell = {"shell": True, "cwd": tmp_path, "env": script_env(), "capture_output": True}
    closed = subprocess.run(
        f"{command} --output-dir {tmp_path / 'closed'} >&-", **shell, text=True
    )
    assert closed.returncode == 0 and "Traceback" not in closed.stderr, explain(closed)
    pipe = f"set -o pipefail; {command} --output-dir {tmp_path / 'piped'} | head -1"
    piped = subprocess.run(pipe, **shell, executable="/bin/bash", text=True)
    assert (
        piped.stdout.startswith("backend tensorflow") and piped.stdout.count("\n") == 1
    )
    assert "Traceback" not in piped.stderr and "Broken pipe" not in piped.stderr, (
        explain(piped)
    )
    for run in ("closed", "piped"):
        assert read_metrics(tmp_path / run)["epochs_run"] == 2


def test_the_progress_bar_in_a_terminal_stays_within_the_epoch(tmp_path):
    """23 steps an epoch, 16 per compiled call: Keras' bar on JAX counts the last call to
    32/23; a terminal (a pseudo-terminal here) shows the bar."""
    import os
    import subprocess
    import sys

    from helpers import ROOT, script_env

    pytest.importorskip("jax")
    args = ["--synthetic", "--limit", "1600", "--units", "4", "--num-layers", "1"]
    args += ["--epochs", "1", "--backend", "jax", "--output-dir", tmp_path / "run"]
    leader, follower = os.openpty()
    command = [sys.executable, ROOT / "train_gru.py", *args]
    process = subprocess.Popen(
        command, stdout=follower, stderr=subprocess.PIPE, env=script_env(), cwd=tmp_path
    )
    os.close(follower)
    chunks = []
    while chunk := read_or_nothing(leader):
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    shown = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode())  # no colours
    counts = [tuple(map(int, m)) for m in re.findall(r"(\d+)/(\d+) ", shown)]
    assert counts and all(done <= steps for done, steps in counts), counts
    # a bar that ends where the epoch ends
    assert (23, 23) in counts and "\r" in shown


def read_or_nothing(terminal):
    """What the process wrote to the pseudo-terminal; b"" once it has closed it."""
    import os

    try:
        return os.read(terminal, 65536)
    except OSError:  # EIO: the process has exited
        return b""


def test_a_model_of_two_inputs_is_one_line_at_build_time(tmp_path):
    two = """
def build_model(features, outputs, units=4):
    import keras
    from keras import layers

    a, b = keras.Input((None, features)), keras.Input((None, features))
    joined = layers.Concatenate()([layers.GRU(units)(a), layers.GRU(units)(b)])
    return keras.Model([a, b], layers.Dense(outputs)(joined))


if __name__ == "__main__":
"""

    def edit(s):
        return (
            s[: s.index("def build_model")]
            + two
            + '    common.run(build_model, reads="sequences")\n'
        )

    script = copy_script("train_gru.py", tmp_path, edit, "train_two.py")
    result = run_here(script, "--synthetic", "--limit", "60", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, explain(result)
    assert (
        "build_model's model takes 2 inputs; the pipeline feeds one (the examples)"
        in result.stderr
    )
