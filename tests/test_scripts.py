"""Each script end to end, as a user runs it: a subprocess with --smoke, and what it wrote."""

import csv
import json
import re
import shutil

import numpy as np
import pytest

from helpers import (
    MNIST_SCRIPTS,
    ROOT,
    SCRIPTS,
    explain,
    load_model,
    read_history,
    read_metrics,
    run_script,
)
from rnn_scripts.cli import SINGLE_THREAD_MAX_CORES

SMOKE_ARGS = {name: ["--smoke", "--dataset", "mnist-sample"] for name in MNIST_SCRIPTS}
SMOKE_ARGS["train_imdb_bilstm.py"] = ["--smoke", "--synthetic"]
OFFLINE = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
OUTPUTS = ("model.keras", "best.keras", "history.csv", "metrics.json", "curves.png", "confusion.png", "preprocessing.json", "args.json")


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """Run every script's smoke test once; the tests below inspect the results."""
    runs = {}

    def run(script):
        if script not in runs:
            out = tmp_path_factory.mktemp(script.removesuffix(".py")) / "run"
            result = run_script(script, *SMOKE_ARGS[script], "--output-dir", out)
            runs[script] = (result, out)
        return runs[script]

    return run


def image(path):
    import matplotlib.image

    return matplotlib.image.imread(path)


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_run_exits_0_and_writes_every_output(smoke_runs, script):
    result, out = smoke_runs(script)
    assert result.returncode == 0, explain(result)
    expected = set(OUTPUTS) | ({"samples.png"} if script in MNIST_SCRIPTS else set())
    assert {p.name for p in out.iterdir()} == expected | {".lock"}  # no state, no partial files
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line.startswith("test accuracy ") and f"-> {out}" in last_line
    assert result.stderr.strip() == "", explain(result)


@pytest.mark.parametrize("script", SCRIPTS)
def test_metrics_json_records_the_run_and_what_the_libraries_did(smoke_runs, script):
    result, out = smoke_runs(script)
    metrics = read_metrics(out)
    assert 0 <= metrics["test_accuracy"] <= 1 and np.isfinite(metrics["test_loss"])
    assert metrics["epochs_run"] == 1 and metrics["seconds_per_epoch"] > 0
    assert metrics["train_samples_per_second"] > 0 and metrics["parameters"] > 0
    assert metrics["train_examples"] == 1800 and metrics["validation_examples"] == 200
    assert metrics["test_examples"] == 333
    assert metrics["backend"] == "tensorflow" and metrics["device"].startswith("CPU")
    assert set(metrics["versions"]) >= {"python", "keras", "tensorflow", "numpy"}
    settings = metrics["settings_in_effect"]
    assert settings["steps_per_execution"] == 16 and settings["compute_dtype"] == "float32"
    assert settings["tensorflow_op_determinism"] is False
    assert settings["gru_split_cell"] is True
    import os

    few_cores = os.cpu_count() <= SINGLE_THREAD_MAX_CORES
    assert settings["cpu_threads_per_op"] == (1 if few_cores else 0)
    assert metrics["arguments"]["smoke"] is True and metrics["arguments"]["batch_size"] == 64
    assert metrics["dataset"]["synthetic"] == (script == "train_imdb_bilstm.py")
    assert metrics["dataset"]["sample"] == (script != "train_imdb_bilstm.py")
    assert f"{metrics['test_accuracy']:.4f}" in result.stdout.splitlines()[-1]


@pytest.mark.parametrize("script", SCRIPTS)
def test_history_csv_has_one_row_per_epoch_with_every_metric(smoke_runs, script):
    _, out = smoke_runs(script)
    with open(out / "history.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 1 and rows[0]["epoch"] == "1"
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds"):
        assert np.isfinite(float(rows[0][key]))
    assert float(rows[0]["learning_rate"]) == pytest.approx(0.001)


@pytest.mark.parametrize("script", ["train_gru.py", "train_imdb_bilstm.py"])
def test_pictures_are_real_plots_of_the_run(smoke_runs, script):
    _, out = smoke_runs(script)
    curves = image(out / "curves.png")
    assert curves.shape[:2] == (400, 1000)  # loss and accuracy; no learning-rate panel
    assert curves[..., :3].std() > 0.05  # not a blank canvas
    confusion = image(out / "confusion.png")
    assert confusion.shape[0] >= 400 and confusion[..., :3].std() > 0.05
    if script in MNIST_SCRIPTS:
        samples = image(out / "samples.png")
        assert samples.shape[:2] == (690, 1600)  # 24 test images, 3 rows of 8


@pytest.mark.parametrize("script", SCRIPTS)
def test_per_class_accuracy_and_confusion_agree_with_the_test_accuracy(smoke_runs, script):
    _, out = smoke_runs(script)
    metrics = read_metrics(out)
    counts = np.array(metrics["confusion_matrix"])
    assert counts.sum() == metrics["test_examples"]
    assert np.trace(counts) / counts.sum() == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    per_class = metrics["per_class_accuracy"]
    assert list(per_class) == metrics["dataset"]["classes"]
    for i, accuracy in enumerate(per_class.values()):
        assert accuracy == pytest.approx(counts[i, i] / counts[i].sum())


@pytest.mark.parametrize("script", ["train_lstm.py", "train_imdb_bilstm.py"])
def test_saved_model_reloads_and_reproduces_the_test_accuracy(smoke_runs, script):
    from test_data import prepared

    _, out = smoke_runs(script)
    metrics = read_metrics(out)
    assert metrics["reloaded_model_max_difference"] < 1e-5
    tokens = "imdb" in script
    values = {"synthetic": True} if tokens else {"dataset": "mnist-sample"}
    data, _ = prepared(tokens, limit=2000, **values)
    logits = load_model(out / "model.keras").predict(data.x_test, verbose=0)
    predicted = (logits[:, 0] > 0).astype(int) if logits.shape[1] == 1 else logits.argmax(axis=1)
    assert np.mean(predicted == data.y_test) == pytest.approx(metrics["test_accuracy"], abs=1e-6)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_start_up_names_a_clearly_faster_backend_as_measured(smoke_runs, script):
    from rnn_scripts.devices import CPU_SAMPLES_PER_SECOND, CLEARLY_FASTER

    result, _ = smoke_runs(script)
    name = script.removeprefix("train_").removesuffix(".py")
    [speeds] = [speeds for (model, _), speeds in CPU_SAMPLES_PER_SECOND.items() if model == name]
    fastest = max(speeds, key=speeds.get)
    notes = [line for line in result.stdout.splitlines() if line.startswith("note: ")]
    if speeds[fastest] / speeds["tensorflow"] >= CLEARLY_FASTER:
        ratio = speeds[fastest] / speeds["tensorflow"]
        assert notes == [f"note: on a 2-core CPU the {fastest} backend trained this model "
                         f"{ratio:.1f}x faster (docs/performance.md): --backend {fastest}"]  # fmt: skip
    else:
        assert notes == []


@pytest.mark.parametrize("script", ["train_lstm.py", "train_gru.py"])
def test_gated_models_learn_real_digits_in_one_smoke_epoch(smoke_runs, script):
    _, out = smoke_runs(script)
    assert read_metrics(out)["test_accuracy"] > 0.35  # chance is 0.10


def test_one_line_per_epoch_when_the_output_is_not_a_terminal(tmp_path):
    result = run_script(
        "train_gru.py", "--synthetic", "--limit", "300", "--units", "4", "--epochs", "3",
        "--output-dir", tmp_path / "run",
    )  # fmt: skip
    assert result.returncode == 0, explain(result)
    epoch_lines = [line for line in result.stdout.splitlines() if re.match(r"^\d+/\d+ - ", line)]
    assert len(epoch_lines) == 3 and all(line.startswith("5/5 - ") for line in epoch_lines)
    assert "\r" not in result.stdout and "\x08" not in result.stdout  # no progress bar


def test_without_network_mnist_falls_back_to_the_shipped_sample(tmp_path):
    result = run_script(
        "train_lstm.py", "--smoke", "--limit", "300", "--units", "8",
        "--output-dir", tmp_path / "run", env=OFFLINE,
    )  # fmt: skip
    assert result.returncode == 0, explain(result)
    assert "could not download MNIST" in result.stdout
    assert "training on the 5,000-digit sample instead" in result.stdout
    dataset = read_metrics(tmp_path / "run")["dataset"]
    assert dataset["name"] == "mnist-sample" and "download failed" in dataset["note"]


def test_fashion_mnist_without_network_or_files_is_a_one_line_error(tmp_path):
    result = run_script(
        "train_gru.py", "--dataset", "fashion_mnist", "--smoke",
        "--output-dir", tmp_path / "run", env=OFFLINE,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, explain(result)
    assert "--data-dir" in result.stderr and "--synthetic" in result.stderr


def test_imdb_without_network_or_file_says_how_to_get_the_data(tmp_path):
    result = run_script("train_imdb_bilstm.py", "--smoke", "--output-dir", tmp_path / "run", env=OFFLINE)
    assert result.returncode == 1
    message = result.stderr.strip()
    assert "\n" not in message and "--data-dir" in message and "--synthetic" in message


def test_backend_startup_noise_is_hidden_unless_verbose(tmp_path):
    tiny = ["--synthetic", "--limit", "120", "--units", "4", "--epochs", "1"]
    quiet = run_script("train_gru.py", *tiny, "--output-dir", tmp_path / "quiet")
    loud = run_script("train_gru.py", *tiny, "--verbose", "--output-dir", tmp_path / "loud")
    assert quiet.returncode == loud.returncode == 0, explain(quiet) + explain(loud)
    assert quiet.stderr.strip() == "", explain(quiet)
    assert "I0000" in loud.stderr or "oneDNN" in loud.stderr  # the noise that was hidden
    assert quiet.stdout.splitlines()[0].startswith("backend tensorflow ")


def test_a_model_that_is_not_keras_or_does_not_fit_the_data_is_one_line(tmp_path):
    folder = copy_project(tmp_path)
    script = (folder / "train_lstm.py").read_text()
    (folder / "train_bad.py").write_text(script.replace("return model", "return None"))
    (folder / "train_wide.py").write_text(script.replace("Dense(classes,", "Dense(7,"))
    for name, words in (("train_bad.py", "must return a Keras model"), ("train_wide.py", "7 units but the data have 10")):
        result = run_script(folder / name, "--synthetic", "--smoke", "--limit", "60", "--units", "4", cwd=folder)
        assert result.returncode == 1, explain(result)
        assert words in result.stderr and result.stderr.count("\n") == 1


def copy_project(tmp_path):
    """The scripts, common.py, rnn_scripts/ and data/ in a folder of their own."""
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("common.py", *SCRIPTS, "predict.py"):
        shutil.copy(ROOT / name, folder / name)
    for name in ("rnn_scripts", "data"):
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def test_a_script_copied_next_to_the_others_runs_with_its_own_name(tmp_path):
    folder = copy_project(tmp_path)
    shutil.copy(folder / "train_gru.py", folder / "train_my_model.py")
    result = run_script(
        folder / "train_my_model.py", "--dataset", "mnist-sample", "--smoke", "--limit", "300",
        "--units", "8", cwd=folder,
    )  # fmt: skip
    assert result.returncode == 0, explain(result)
    runs = list((folder / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("train_my_model-")
    assert json.loads((runs[0] / "metrics.json").read_text())["dataset"]["sample"]
    assert read_history(runs[0])[0]["epoch"] == 1
