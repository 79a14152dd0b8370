"""A script as the start of your own work: the package installed from a wheel, a copied
script training and predicting in an empty folder outside the repository, a softmax output,
a regression end to end, what run() takes besides build_model, and imports without effects.

Slow by design (every run of the suite ends with this file's seconds): it builds the wheel
and installs it into a fresh virtual environment, then trains from a copied script.
"""

import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from files import separable_sequences, write_sequences_npz
from helpers import (
    ROOT,
    copy_script,
    explain,
    read_history,
    read_metrics,
    run_script,
    script_env,
)

OFFLINE = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
PACKAGE_FILES = (
    "pyproject.toml",
    "README.md",
    "requirements.txt",
    "requirements-export.txt",
    "rnn_scripts",
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package built into a wheel (from a copy of the sources, so the repository stays
    clean) and installed into a folder of its own: (site folder, wheel)."""
    root = tmp_path_factory.mktemp("package")
    source = root / "source"
    source.mkdir()
    for name in PACKAGE_FILES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(
            ROOT / name,
            source / name,
            **(
                {"ignore": shutil.ignore_patterns("__pycache__")}
                if (ROOT / name).is_dir()
                else {}
            ),
        )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(root / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel = next((root / "dist").glob("rnn_scripts-*.whl"))
    site = root / "site"
    done = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return site, wheel


def outside(site, folder, **extra):
    """An environment with the installed package and not the repository on the path."""
    env = script_env({**OFFLINE, **extra})
    env["PYTHONPATH"] = str(site)
    return env


def test_the_wheel_installs_the_package_and_its_sample_and_no_generic_module(installed):
    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"rnn_scripts", wheel.name.split("-py3")[0] + ".dist-info"}
    assert (
        "rnn_scripts/sample/mnist-sample.npz" in names
        and "rnn_scripts/data/tables.py" in names
    )
    metadata = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith("METADATA")))
        .decode()
    )
    assert "Requires-Dist: keras" in metadata and "Requires-Dist: tensorflow" in metadata


def test_a_copied_script_trains_and_predicts_in_an_empty_folder_outside_the_repository(
    installed, tmp_path
):
    site, _ = installed
    folder = tmp_path / "my-project"
    script = copy_script(
        "train_lstm.py", folder
    )  # the script and common.py: what the README says
    assert sorted(p.name for p in folder.iterdir()) == ["common.py", "train_lstm.py"]
    env = outside(site, folder)
    command = [
        sys.executable,
        str(script),
        "--smoke",
        "--limit",
        "300",
        "--units",
        "8",
        "--output-dir",
        "runs/mine",
    ]
    trained = subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    assert trained.returncode == 0, explain(trained)
    assert (
        "training on the 5,000-digit sample instead" in trained.stdout
    )  # the installed sample
    metrics = read_metrics(folder / "runs" / "mine")
    assert metrics["dataset"]["sample"] and str(ROOT) not in json.dumps(metrics)
    with np.load(site / "rnn_scripts" / "sample" / "mnist-sample.npz") as sample:
        np.save(folder / "digits.npy", sample["x_test"][:3])
    predicted = subprocess.run(
        [sys.executable, "-m", "rnn_scripts.predict", "runs/mine", "digits.npy"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert predicted.returncode == 0 and predicted.stdout.count("digits.npy[") == 3, (
        explain(predicted)
    )
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import rnn_scripts, common; print(rnn_scripts.__file__)",
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    assert probe.stdout.startswith(str(site)), (
        probe.stdout
    )  # the installed copy, not the repository's


def test_importing_common_or_the_package_changes_nothing_and_loads_no_backend(tmp_path):
    program = """
import os, signal, sys
watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
before = ({s: signal.getsignal(s) for s in watched}, sys.stdout, sys.stderr, dict(os.environ))
import common
import rnn_scripts.pipeline, rnn_scripts.predict, rnn_scripts.export, rnn_scripts.data, rnn_scripts.preprocess
after = ({s: signal.getsignal(s) for s in watched}, sys.stdout, sys.stderr, dict(os.environ))
loaded = sorted(m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules)
print("same" if before == after else "changed", loaded)
"""
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        env=script_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout.strip() == "same []", explain(done)


# --------------------------------------------------------------------------------------
# Outputs the template handles: probabilities, values
# --------------------------------------------------------------------------------------
def test_a_softmax_output_layer_trains_as_probabilities_and_is_not_squashed_twice(
    tmp_path,
):
    import keras

    from rnn_scripts.preprocess import Preprocessing

    write_sequences_npz(tmp_path / "my.npz")
    softmax = lambda s: s.replace(
        'Dense(outputs, dtype="float32")',
        'Dense(outputs, activation="softmax", dtype="float32")',
    )  # noqa: E731
    script = copy_script("train_lstm.py", tmp_path, softmax, "train_softmax.py")
    assert 'activation="softmax"' in script.read_text()
    result = run_script(
        script,
        "--data",
        tmp_path / "my.npz",
        "--epochs",
        "4",
        "--units",
        "16",
        "--output-dir",
        tmp_path / "run",
        cwd=tmp_path,
    )
    assert result.returncode == 0 and "UserWarning" not in result.stderr, explain(result)
    assert read_metrics(tmp_path / "run")["test_accuracy"] > 0.9
    assert (
        json.loads((tmp_path / "run" / "preprocessing.json").read_text())["output"]
        == "probabilities"
    )
    x, _ = separable_sequences(6, seed=7)
    np.save(tmp_path / "x.npy", x)
    rows = [json.loads(line) for line in subprocess.run(
        [sys.executable, str(ROOT / "predict.py"), str(tmp_path / "run"), "x.npy", "--json"],
        cwd=tmp_path, env=script_env(), capture_output=True, text=True).stdout.splitlines()]  # fmt: skip
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    expected = model.predict(Preprocessing.load(tmp_path / "run").apply(x), verbose=0)
    np.testing.assert_allclose(
        [list(r["probabilities"].values()) for r in rows], expected, atol=1e-5
    )
    assert (
        max(r["probability"] for r in rows) > 0.5
    )  # a second softmax keeps 4 classes under e/(e+3) = 0.475


def write_regression(path, count=500, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (count, 20, 2)).astype(np.float32)
    y = (
        300 + 40 * x[:, -5:, 0].mean(axis=1) + 10 * x[:, :, 1].mean(axis=1)
    )  # float targets
    split = int(count * 0.8)
    np.savez(
        path, x_train=x[:split], y_train=y[:split], x_test=x[split:], y_test=y[split:]
    )
    return x, y


def test_a_regression_trains_resumes_and_predicts_values_in_the_targets_units(tmp_path):
    from test_resume import kill_after_epoch, without_seconds

    x, y = write_regression(tmp_path / "values.npz")
    args = [
        "--data",
        tmp_path / "values.npz",
        "--epochs",
        "3",
        "--units",
        "16",
        "--learning-rate",
        "0.01",
    ]
    whole = run_script("train_lstm.py", *args, "--output-dir", tmp_path / "whole")
    assert whole.returncode == 0, explain(whole)
    assert whole.stdout.strip().splitlines()[-1].startswith("test mae ")
    kill_after_epoch("train_lstm.py", args, tmp_path / "resumed")
    resumed = run_script("train_lstm.py", "--resume", tmp_path / "resumed")
    assert resumed.returncode == 0 and "after epoch 1" in resumed.stdout, explain(
        resumed
    )
    assert without_seconds(read_history(tmp_path / "resumed")) == without_seconds(
        read_history(tmp_path / "whole")
    )
    metrics = read_metrics(tmp_path / "whole")
    history = read_history(tmp_path / "whole")
    assert list(history[0]) == [
        "epoch",
        "loss",
        "mae",
        "rmse",
        "val_loss",
        "val_mae",
        "val_rmse",
        "learning_rate",
        "seconds",
    ]
    assert (
        metrics["best_epoch"] == min(history, key=lambda row: row["val_loss"])["epoch"]
    )
    assert (
        metrics["test_mae"] < np.abs(y - y.mean()).mean() / 2
    )  # learned, in the targets' units
    assert (
        metrics["dataset"]["task"] == "regression"
        and (tmp_path / "whole" / "predictions.png").is_file()
    )
    assert not (tmp_path / "whole" / "confusion.png").exists()
    np.save(tmp_path / "new.npy", x[-3:])
    done = subprocess.run(
        [sys.executable, str(ROOT / "predict.py"), str(tmp_path / "whole"), "new.npy"],
        cwd=tmp_path,
        env=script_env(),
        capture_output=True,
        text=True,
    )
    values = [float(line.split("value ")[1]) for line in done.stdout.splitlines()]
    assert len(values) == 3 and all(abs(v - t) < 40 for v, t in zip(values, y[-3:])), (
        explain(done)
    )


# --------------------------------------------------------------------------------------
# What run() takes besides build_model
# --------------------------------------------------------------------------------------
HOOKS = """

def callbacks():
    import keras

    return [keras.callbacks.CSVLogger("callback-log.csv")]

"""


def test_loss_metrics_optimizer_and_callbacks_are_arguments_of_run(tmp_path):
    def with_hooks(script):
        script = script.replace(
            'if __name__ == "__main__":', HOOKS + 'if __name__ == "__main__":'
        )
        return script.replace(
            "common.run(build_model, ",
            'common.run(build_model, loss="huber", metrics=["mse"], optimizer="adamw", callbacks=callbacks, ',
        )

    write_regression(tmp_path / "values.npz", count=200)
    script = copy_script("train_gru.py", tmp_path, with_hooks, "train_hooks.py")
    help_text = run_script(script, "--help", cwd=tmp_path).stdout
    assert "--optimizer" not in help_text  # the script brings its own
    result = run_script(
        script,
        "--data",
        tmp_path / "values.npz",
        "--epochs",
        "2",
        "--units",
        "4",
        "--output-dir",
        tmp_path / "run",
        cwd=tmp_path,
    )
    assert result.returncode == 0, explain(result)
    metrics = read_metrics(tmp_path / "run")
    assert (
        metrics["settings_in_effect"]["optimizer"] == "AdamW"
        and metrics["arguments"]["optimizer"] == "script"
    )
    assert "mse" in read_history(tmp_path / "run")[0] and "test_mse" in metrics
    logged = (tmp_path / "callback-log.csv").read_text().splitlines()
    assert len(logged) == 3 and "mse" in logged[0]
    mse, huber = metrics["test_mse"], metrics["test_loss"]
    assert (
        huber < mse
    )  # a Huber loss grows linearly where the squared error grows quadratically


def test_class_weights_balanced_or_the_scripts_own_reach_the_fit(tmp_path):
    from rnn_scripts.training import class_weights

    class Config:
        class_weight = "balanced"

    assert class_weights(Config, np.array([0, 0, 0, 1]), ["a", "b"]) == {
        0: 4 / 6,
        1: 2.0,
    }
    Config.class_weight = "script"
    assert class_weights(Config, np.array([0, 1]), ["a", "b"], {"b": 3}) == {
        0: 1.0,
        1: 3.0,
    }
    x, y = separable_sequences(300, classes=2, seed=5)
    y[:250] = 0  # mostly one class
    np.savez(tmp_path / "skewed.npz", x_train=x, y_train=y)
    losses = {}
    for weight in ("none", "balanced"):
        out = tmp_path / weight
        result = run_script(
            "train_gru.py",
            "--data",
            tmp_path / "skewed.npz",
            "--epochs",
            "1",
            "--units",
            "4",
            "--class-weight",
            weight,
            "--output-dir",
            out,
        )
        assert result.returncode == 0, explain(result)
        losses[weight] = read_history(out)[0]["loss"]
    assert losses["none"] != losses["balanced"]
    write_regression(tmp_path / "values.npz", count=100)
    regression = run_script(
        "train_gru.py",
        "--data",
        tmp_path / "values.npz",
        "--class-weight",
        "balanced",
        "--epochs",
        "1",
        "--output-dir",
        tmp_path / "r",
    )
    assert (
        regression.returncode == 2
        and "--class-weight weighs classes; this run predicts values"
        in regression.stderr
    ), explain(regression)
