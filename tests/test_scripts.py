"""Each script end to end, as a user runs it: a subprocess with --smoke."""

import csv
import os
import json
import shutil

import numpy as np
import pytest

import common

from helpers import MNIST_SCRIPTS, ROOT, SCRIPTS, explain, read_metrics, run_script

OUTPUTS = ("model.keras", "best.keras", "history.csv", "metrics.json", "curves.png")
SMOKE_ARGS = {name: ["--smoke", "--dataset", "mnist-sample"] for name in MNIST_SCRIPTS}
SMOKE_ARGS["train_imdb_bilstm.py"] = ["--smoke", "--synthetic"]
OFFLINE = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}


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


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_run_exits_0_and_writes_every_output(smoke_runs, script):
    result, out = smoke_runs(script)
    assert result.returncode == 0, explain(result)
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    assert not (out / "training-state").exists()  # removed once the run finished
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line.startswith("test accuracy ") and f"-> {out}" in last_line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_metrics_json_records_the_run(smoke_runs, script):
    result, out = smoke_runs(script)
    metrics = read_metrics(out)
    assert 0 <= metrics["test_accuracy"] <= 1 and np.isfinite(metrics["test_loss"])
    assert metrics["epochs_run"] == 1 and metrics["seconds_per_epoch"] > 0
    assert metrics["train_samples_per_second"] > 0 and metrics["parameters"] > 0
    assert metrics["train_examples"] == 1800 and metrics["validation_examples"] == 200
    assert metrics["test_examples"] == 333
    assert metrics["backend"] == "tensorflow" and metrics["device"].startswith("CPU")
    assert set(metrics["versions"]) >= {"python", "keras", "tensorflow", "numpy"}
    few_cores = os.cpu_count() <= common.SINGLE_THREAD_MAX_CORES
    assert metrics["cpu_threads_per_op"] == (1 if few_cores else None)
    assert (
        metrics["arguments"]["smoke"] is True
        and metrics["arguments"]["batch_size"] == 64
    )
    assert metrics["dataset"]["synthetic"] == (script == "train_imdb_bilstm.py")
    assert metrics["dataset"]["sample"] == (script != "train_imdb_bilstm.py")
    assert f"{metrics['test_accuracy']:.4f}" in result.stdout.splitlines()[-1]


@pytest.mark.parametrize("script", SCRIPTS)
def test_history_csv_has_one_row_per_epoch_with_all_four_metrics(smoke_runs, script):
    _, out = smoke_runs(script)
    with open(out / "history.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 1 and rows[0]["epoch"] == "1"
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert np.isfinite(float(rows[0][key]))


@pytest.mark.parametrize("script", SCRIPTS)
def test_curves_png_is_a_png_image(smoke_runs, script):
    _, out = smoke_runs(script)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("script", ["train_lstm.py", "train_imdb_bilstm.py"])
def test_saved_model_reloads_and_reproduces_the_test_accuracy(smoke_runs, script):
    import common
    import keras

    result, out = smoke_runs(script)
    metrics = read_metrics(out)
    assert metrics["reloaded_model_max_difference"] < 1e-5
    args = common.parse_arguments(
        script,
        None,
        {"epochs": 1, "units": 1},
        "imdb" if "imdb" in script else "mnist",
        SMOKE_ARGS[script],
    )
    data = common.load_data(args, "imdb" if "imdb" in script else "mnist")
    model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    logits = model.predict(data.x_test, verbose=0)
    if logits.shape[1] == 1:
        predicted = (logits[:, 0] > 0).astype(int)
    else:
        predicted = logits.argmax(axis=1)
    assert np.mean(predicted == data.y_test) == pytest.approx(
        metrics["test_accuracy"], abs=1e-6
    )


@pytest.mark.parametrize("script", ["train_lstm.py", "train_gru.py"])
def test_gated_models_learn_real_digits_in_one_smoke_epoch(smoke_runs, script):
    _, out = smoke_runs(script)
    assert read_metrics(out)["test_accuracy"] > 0.35  # chance is 0.10


def test_without_network_mnist_falls_back_to_the_shipped_sample(tmp_path):
    result = run_script(
        "train_lstm.py",
        "--smoke",
        "--limit",
        "300",
        "--units",
        "8",
        "--output-dir",
        tmp_path / "run",
        env=OFFLINE,
    )
    assert result.returncode == 0, explain(result)
    assert "could not download MNIST" in result.stdout
    assert "training on the 5,000-digit sample instead" in result.stdout
    dataset = read_metrics(tmp_path / "run")["dataset"]
    assert dataset["name"] == "mnist-sample" and "download failed" in dataset["note"]


def test_fashion_mnist_without_network_or_files_is_a_one_line_error(tmp_path):
    result = run_script(
        "train_gru.py",
        "--dataset",
        "fashion_mnist",
        "--smoke",
        "--output-dir",
        tmp_path / "run",
        env=OFFLINE,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, explain(result)
    assert "--data-dir" in result.stderr and "--synthetic" in result.stderr


def test_imdb_without_network_or_file_says_how_to_get_the_data(tmp_path):
    result = run_script(
        "train_imdb_bilstm.py", "--smoke", "--output-dir", tmp_path / "run", env=OFFLINE
    )
    assert result.returncode == 1
    message = result.stderr.strip()
    assert "\n" not in message and "--data-dir" in message and "--synthetic" in message


def test_a_script_copied_with_common_py_into_an_empty_folder_runs(tmp_path):
    shutil.copy(ROOT / "train_gru.py", tmp_path / "train_my_model.py")
    shutil.copy(ROOT / "common.py", tmp_path / "common.py")
    result = run_script(
        tmp_path / "train_my_model.py",
        "--synthetic",
        "--smoke",
        "--limit",
        "300",
        "--units",
        "8",
        cwd=tmp_path,
    )
    assert result.returncode == 0, explain(result)
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("train_my_model-")
    assert json.loads((runs[0] / "metrics.json").read_text())["dataset"]["synthetic"]


def test_tensorflow_start_up_noise_is_hidden_unless_verbose(tmp_path):
    tiny = ["--synthetic", "--limit", "120", "--units", "4", "--epochs", "1"]
    quiet = run_script("train_gru.py", *tiny, "--output-dir", tmp_path / "quiet")
    loud = run_script(
        "train_gru.py", *tiny, "--verbose", "--output-dir", tmp_path / "loud"
    )
    assert quiet.returncode == loud.returncode == 0, explain(quiet) + explain(loud)
    assert quiet.stderr.strip() == "", explain(quiet)
    assert "I0000" in loud.stderr or "oneDNN" in loud.stderr  # the noise that was hidden
    assert quiet.stdout.splitlines()[0].startswith("backend tensorflow ")
