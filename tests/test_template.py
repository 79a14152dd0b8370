"""A script as the start of your own work: the package installed from a wheel, a copied
script training and predicting in an empty folder outside the repository (with an exit hook
of its own), a softmax output, a regression end to end, what run() takes besides
build_model, and imports without effects.

The wheel is built and installed once, and the copied script runs from it in a process of
its own; the other runs go through helpers.run_here in this process.
"""

import json
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from files import separable_sequences, write_regression, write_sequences_npz
from helpers import (
    ROOT,
    copy_script,
    explain,
    predict_here,
    read_history,
    read_metrics,
    run_here,
    run_until_epoch,
    script_env,
    standardised,
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
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    wheel_command = [*pip, "wheel", "--no-deps", "--no-build-isolation"]
    built = subprocess.run(
        [*wheel_command, "-w", str(root / "dist"), str(source)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel = next((root / "dist").glob("rnn_scripts-*.whl"))
    site = root / "site"
    install = [
        *pip,
        "install",
        "--no-deps",
        "--no-index",
        "--target",
        str(site),
        str(wheel),
    ]
    done = subprocess.run(install, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return site, wheel


def outside(site, **extra):
    """An environment with the installed package and not the repository on the path."""
    env = script_env({**OFFLINE, **extra})
    env["PYTHONPATH"] = str(site)
    return env


def test_the_wheel_installs_the_package_and_its_sample_and_no_generic_module(installed):
    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"rnn_scripts", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "rnn_scripts/sample/mnist-sample.npz" in names
    assert "rnn_scripts/data/tables.py" in names
    metadata = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("METADATA"))
    )
    assert (
        b"Requires-Dist: keras" in metadata and b"Requires-Dist: tensorflow" in metadata
    )


AT_EXIT = """
import atexit


@atexit.register
def flush():  # what a logger or an experiment tracker does when the program ends
    with open("flushed-at-exit.txt", "w") as stream:
        stream.write("flushed")

"""


def test_a_copied_script_trains_and_predicts_in_an_empty_folder_outside_the_repository(
    installed, tmp_path
):
    """The README's template journey, as a process of its own: the script and common.py
    copied, the package installed from its wheel, offline. The copy registers an exit
    hook, which runs once the finished run returns."""
    site, _ = installed
    folder = tmp_path / "my-project"
    with_hook = lambda s: s.replace("import common\n", "import common\n" + AT_EXIT)  # noqa: E731
    script = copy_script("train_lstm.py", folder, with_hook)
    assert sorted(p.name for p in folder.iterdir()) == ["common.py", "train_lstm.py"]
    env = outside(site)
    command = [
        sys.executable,
        str(script),
        "--limit",
        "120",
        "--epochs",
        "1",
        "--units",
        "8",
    ]
    command += ["--output-dir", "runs/mine"]
    trained = subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True
    )
    assert trained.returncode == 0, explain(trained)
    # the installed one
    assert "training on the 5,000-digit sample instead" in trained.stdout
    assert (folder / "flushed-at-exit.txt").read_text() == "flushed"
    metrics = read_metrics(folder / "runs" / "mine")
    assert metrics["dataset"]["sample"] and str(ROOT) not in json.dumps(metrics)
    with np.load(site / "rnn_scripts" / "sample" / "mnist-sample.npz") as sample:
        np.save(folder / "digits.npy", sample["x_test"][:3])
    predict = [sys.executable, "-m", "rnn_scripts.predict", "runs/mine", "digits.npy"]
    predicted = subprocess.run(
        predict, cwd=folder, env=env, capture_output=True, text=True
    )
    assert predicted.returncode == 0, explain(predicted)
    assert predicted.stdout.count("digits.npy[") == 3
    program = "import rnn_scripts, common; print(rnn_scripts.__file__)"
    probe = subprocess.run(
        [sys.executable, "-c", program],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    assert probe.stdout.startswith(str(site)), probe.stdout  # the installed copy


def test_importing_common_or_the_package_changes_nothing_and_loads_no_backend():
    program = """
import os, signal, sys
watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
before = ({s: signal.getsignal(s) for s in watched}, sys.stdout, sys.stderr, dict(os.environ))
import common
import rnn_scripts.pipeline, rnn_scripts.predict, rnn_scripts.export, rnn_scripts.data
import rnn_scripts.preprocess
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

    write_sequences_npz(tmp_path / "my.npz")
    softmax = lambda s: s.replace(  # noqa: E731
        'Dense(outputs, dtype="float32")',
        'Dense(outputs, activation="softmax", dtype="float32")',
    )
    script = copy_script("train_lstm.py", tmp_path, softmax, "train_softmax.py")
    assert 'activation="softmax"' in script.read_text()
    args = [
        "--data",
        tmp_path / "my.npz",
        "--epochs",
        "4",
        "--units",
        "16",
        "--num-layers",
        "1",
    ]
    result = run_here(script, *args, "--output-dir", tmp_path / "run", cwd=tmp_path)
    assert result.returncode == 0 and "UserWarning" not in result.stderr, explain(result)
    assert read_metrics(tmp_path / "run")["test_accuracy"] > 0.9
    spec = json.loads((tmp_path / "run" / "preprocessing.json").read_text())
    assert spec["output"] == "probabilities"
    x, _ = separable_sequences(6, seed=7)
    np.save(tmp_path / "x.npy", x)
    found = predict_here(tmp_path / "run", "x.npy", "--json", cwd=tmp_path)
    rows = [json.loads(line) for line in found.stdout.splitlines()]
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    expected = model.predict(standardised(tmp_path / "run", x), verbose=0)
    np.testing.assert_allclose(
        [list(r["probabilities"].values()) for r in rows], expected, atol=1e-5
    )
    # a second softmax: under e/(e+3) = 0.475
    assert max(r["probability"] for r in rows) > 0.5


def test_a_regression_trains_resumes_and_predicts_values_in_the_targets_units(
    finished, tmp_path
):
    """Targets around 300 with a spread of about 9: the model is trained in standardised
    units, and what comes out is in the targets' own (their mean and spread), by the
    epoch with the lowest validation loss."""
    from rnn_scripts.serving import TrainedRun

    whole = finished("regression")
    x, y = write_regression(tmp_path / "values.npz")
    args = ["--data", tmp_path / "values.npz", "--epochs", "3", "--units", "16"]
    args += ["--num-layers", "1", "--learning-rate", "0.01"]
    run_until_epoch("train_lstm.py", args, tmp_path / "resumed")
    resumed = run_here("train_lstm.py", "--resume", tmp_path / "resumed")
    assert resumed.returncode == 0 and "after epoch 1" in resumed.stdout, explain(
        resumed
    )
    assert re.match(
        r"test mae [\d.]+  rmse [\d.]+  r2 [\d.]+  loss ",
        resumed.stdout.strip().splitlines()[-1],
    )
    from test_resume import without_seconds

    assert without_seconds(read_history(tmp_path / "resumed")) == without_seconds(
        read_history(whole)
    )
    metrics, history = read_metrics(whole), read_history(whole)
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
    test_x, test_y = x[400:], y[400:]
    assert metrics["test_mae"] < np.abs(y - y.mean()).mean() / 2  # learned, in the units
    predicted = TrainedRun(whole).predict(test_x).values[:, 0]
    assert abs(predicted.mean() - test_y.mean()) < 0.25 * y.std()  # the targets' mean
    assert 0.5 < predicted.std() / test_y.std() < 1.5  # and their spread
    assert np.abs(predicted - test_y).mean() == pytest.approx(
        metrics["test_mae"], rel=1e-4
    )
    assert metrics["dataset"]["task"] == "regression"
    r2 = 1 - ((predicted - test_y) ** 2).sum() / ((test_y - test_y.mean()) ** 2).sum()
    assert metrics["test_r2"] == pytest.approx(r2, abs=1e-4) and metrics["test_r2"] > 0.5
    assert (whole / "predictions.png").is_file() and not (
        whole / "confusion.png"
    ).exists()
    np.save(tmp_path / "new.npy", x[-3:])
    done = predict_here(whole, "new.npy", cwd=tmp_path)
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


def edited_run_call(arguments, hooks=""):
    """A script edit: `hooks` (functions) above the main block, `arguments` in run()."""

    def edit(script):
        script = script.replace(
            'if __name__ == "__main__":', hooks + 'if __name__ == "__main__":'
        )
        return script.replace(
            "common.run(build_model, ", f"common.run(build_model, {arguments}"
        )

    return edit


def test_loss_metrics_optimizer_and_callbacks_are_arguments_of_run(tmp_path):
    write_regression(tmp_path / "values.npz", count=200)
    hooks = 'loss="huber", metrics=["mse"], optimizer="adamw", callbacks=callbacks, '
    script = copy_script(
        "train_gru.py", tmp_path, edited_run_call(hooks, HOOKS), "train_hooks.py"
    )
    help_text = run_here(script, "--help", cwd=tmp_path).stdout
    assert "--optimizer" not in help_text  # the script brings its own
    args = [
        "--data",
        tmp_path / "values.npz",
        "--epochs",
        "2",
        "--units",
        "4",
        "--num-layers",
        "1",
    ]
    result = run_here(script, *args, "--output-dir", tmp_path / "run", cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    metrics = read_metrics(tmp_path / "run")
    assert metrics["settings_in_effect"]["optimizer"] == "AdamW"
    assert metrics["arguments"]["optimizer"] == "script"
    assert "mse" in read_history(tmp_path / "run")[0] and "test_mse" in metrics
    logged = (tmp_path / "callback-log.csv").read_text().splitlines()
    assert len(logged) == 3 and "mse" in logged[0]
    mse, huber = metrics["test_mse"], metrics["test_loss"]
    # a Huber loss grows linearly where the squared error grows quadratically
    assert huber < mse


def test_an_optimizer_class_as_the_readme_shows_takes_the_learning_rate_flag(tmp_path):
    write_sequences_npz(tmp_path / "my.npz", train=120, test=30)
    import_keras = (
        "\n\ndef adamw():\n    import keras\n\n    return keras.optimizers.AdamW\n\n\n"
    )
    edit = edited_run_call("optimizer=adamw(), ", import_keras)
    script = copy_script("train_gru.py", tmp_path, edit, "train_adamw.py")
    args = [
        "--data",
        tmp_path / "my.npz",
        "--epochs",
        "1",
        "--units",
        "4",
        "--num-layers",
        "1",
    ]
    args += ["--learning-rate", "0.004", "--clipnorm", "0.5"]
    result = run_here(script, *args, "--output-dir", tmp_path / "run", cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    settings = read_metrics(tmp_path / "run")["settings_in_effect"]
    assert settings["optimizer"] == "AdamW" and settings["clipnorm"] == 0.5
    assert read_history(tmp_path / "run")[0]["learning_rate"] == pytest.approx(0.004)


def test_class_weights_balanced_or_the_scripts_own_reach_the_fit(tmp_path):
    """The same skewed data and seed: no weights, balanced weights, and the script's own
    run(class_weight=...) each give the first batches another loss."""
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
    own = copy_script(
        "train_gru.py", tmp_path, edited_run_call('class_weight={"1": 5.0}, '), "o.py"
    )
    args = [
        "--data",
        tmp_path / "skewed.npz",
        "--epochs",
        "1",
        "--units",
        "4",
        "--num-layers",
        "1",
    ]
    losses = {}
    for name, script, extra in (
        ("none", "train_gru.py", ["--class-weight", "none"]),
        ("balanced", "train_gru.py", ["--class-weight", "balanced"]),
        ("own", own, []),
    ):
        out = tmp_path / name
        result = run_here(script, *args, *extra, "--output-dir", out, cwd=tmp_path)
        assert result.returncode == 0, explain(result)
        losses[name] = read_history(out)[0]["loss"]
    assert len(set(losses.values())) == 3, losses
    assert read_metrics(tmp_path / "own")["arguments"]["class_weight"] == "script"
    write_regression(tmp_path / "values.npz", count=100)
    args = [
        "--data",
        tmp_path / "values.npz",
        "--class-weight",
        "balanced",
        "--epochs",
        "1",
    ]
    regression = run_here("train_gru.py", *args, "--output-dir", tmp_path / "r")
    assert regression.returncode == 2, explain(regression)
    assert "--class-weight weighs classes; this run predicts values" in regression.stderr


@pytest.mark.parametrize(
    "arguments, words",
    [
        (
            'loss="sparse_categorical_crossentropyy", ',
            "run(loss='sparse_categorical_crossentropyy'): not a name Keras knows",
        ),
        (
            'optimizer="adamm", ',
            "run(optimizer='adamm'): not an optimizer Keras knows (adam, rmsprop, sgd, adamw",
        ),
        ('metrics=["accuracyy"], ', "run(metrics='accuracyy'): not a name Keras knows"),
        (
            "loss=3, ",
            "run(loss=...): expected a name, a keras.losses object or a function of (y_true, y_pred), got 3",
        ),
        (
            "optimizer=3, ",
            "run(optimizer=...): expected a name, a keras.optimizers class or object",
        ),
        (
            "loss=lambda y: y, ",
            "run(loss=...): expected a name, a keras.losses object or a function of (y_true, y_pred)",
        ),
        ("callbacks=[object()], ", "run(callbacks=...): <object object at"),
        (
            "class_weight=[1, 2], ",
            "run(class_weight=...): expected a dict or 'balanced'",
        ),
    ],
)
def test_a_wrong_argument_of_run_is_one_line_naming_it(tmp_path, arguments, words):
    script = copy_script(
        "train_gru.py", tmp_path, edited_run_call(arguments), "train_wrong.py"
    )
    args = ["--synthetic", "--limit", "60", "--units", "4", "--num-layers", "1"]
    result = run_here(script, *args, cwd=tmp_path)
    assert result.returncode == 2, explain(result)
    assert (
        result.stderr.startswith(f"error: {words}") and result.stderr.count("\n") == 1
    ), result.stderr
    assert not (tmp_path / "runs").exists()


def test_the_scripts_own_function_that_fails_in_training_keeps_its_traceback(tmp_path):
    hooks = (
        "\n\ndef broken(y_true, y_pred):\n    raise ZeroDivisionError('my bug')\n\n\n"
    )
    script = copy_script(
        "train_gru.py", tmp_path, edited_run_call("loss=broken, ", hooks), "t.py"
    )
    args = ["--synthetic", "--limit", "60", "--units", "4", "--num-layers", "1"]
    result = run_here(script, *args, cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert (
        "ZeroDivisionError: my bug" in result.stderr
        and "def broken" in script.read_text()
    )


def test_an_optimizer_given_as_a_function_of_no_arguments_as_the_readme_allows(tmp_path):
    write_sequences_npz(tmp_path / "my.npz", train=120, test=30)
    lazy = "optimizer=lambda: __import__('keras').optimizers.Nadam, "
    script = copy_script(
        "train_gru.py", tmp_path, edited_run_call(lazy), "train_lazy.py"
    )
    args = [
        "--data",
        tmp_path / "my.npz",
        "--epochs",
        "1",
        "--units",
        "4",
        "--num-layers",
        "1",
    ]
    result = run_here(script, *args, "--output-dir", tmp_path / "run", cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    assert read_metrics(tmp_path / "run")["settings_in_effect"]["optimizer"] == "Nadam"
