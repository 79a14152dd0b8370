"""Steering and watching a run: optimizers, clipping, learning-rate schedules, early
stopping, TensorBoard, curves that follow the run, the tutorials' recipes; schedules and
early stopping resume exactly.

Each schedule is checked on real runs in this test process (helpers.run_here), and resumed
after a run stopped dead after an epoch (helpers.run_until_epoch).
"""

import math

import numpy as np
import pytest
from test_resume import without_seconds

from helpers import (
    assert_same_weights,
    explain,
    load_model,
    read_history,
    read_metrics,
    run_here,
    run_until_epoch,
)

PLATEAU = [
    "--dataset",
    "mnist-sample",
    "--limit",
    "300",
    "--units",
    "8",
    "--epochs",
    "12",
]
PLATEAU += ["--num-layers", "1", "--learning-rate", "2.0", "--lr-schedule", "plateau"]
PLATEAU += ["--early-stopping", "4"]
COSINE = ["--dataset", "mnist-sample", "--limit", "300", "--units", "8", "--epochs", "3"]
COSINE += ["--num-layers", "1", "--lr-schedule", "cosine", "--optimizer", "rmsprop"]
COSINE += ["--clipnorm", "0.5", "--tensorboard"]


def image(path):
    import matplotlib.image

    return matplotlib.image.imread(path)


@pytest.fixture(scope="module")
def plateau_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("plateau") / "run"
    result = run_here("train_gru.py", *PLATEAU, "--output-dir", out)
    assert result.returncode == 0, explain(result)
    return out, result


@pytest.fixture(scope="module")
def cosine_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cosine") / "run"
    result = run_here("train_lstm.py", *COSINE, "--output-dir", out)
    assert result.returncode == 0, explain(result)
    return out, result


def test_plateau_halves_the_learning_rate_when_the_validation_loss_stalls(plateau_run):
    out, result = plateau_run
    rows = read_history(out)
    rates = [r["learning_rate"] for r in rows]
    assert rates[0] == 2.0 and 1.0 in rates  # reduced once the loss stalled for 2 epochs
    reduced = rates.index(1.0)  # the row of the epoch whose end reduced it
    losses = [r["val_loss"] for r in rows]
    best, stalled, expected = float("inf"), 0, None
    for epoch, loss in enumerate(losses):  # ReduceLROnPlateau's count (min_delta 1e-4)
        best, stalled = (loss, 0) if loss < best - 1e-4 else (best, stalled + 1)
        if stalled == 2:
            expected = epoch
            break
    assert reduced == expected  # after exactly 2 epochs without improvement
    assert image(out / "curves.png").shape[:2] == (400, 1500)  # a learning-rate panel


def test_early_stopping_stops_and_keeps_the_best_epochs_weights(plateau_run):
    out, result = plateau_run
    metrics, rows = read_metrics(out), read_history(out)
    best = max(rows, key=lambda r: r["val_accuracy"])
    assert metrics["best_epoch"] == rows.index(best) + 1
    assert (
        metrics["stopped_early_at_epoch"] == len(rows) == metrics["best_epoch"] + 4 < 12
    )
    assert (
        f"stopped early at epoch {len(rows)}, kept epoch {metrics['best_epoch']}"
        in result.stdout
    )
    assert metrics["restored_best_weights"] is True
    for a, b in zip(
        load_model(out / "model.keras").get_weights(),
        load_model(out / "best.keras").get_weights(),
    ):
        np.testing.assert_array_equal(a, b)


def test_a_tie_is_not_a_better_epoch():
    """Accuracy on a small validation split ties often: the first epoch with the best
    score stays the best, and early stopping counts from it."""
    from types import SimpleNamespace

    import keras

    from rnn_scripts import training
    from rnn_scripts.resume import Progress

    saved = []
    config = SimpleNamespace(early_stopping=2, learning_rate=None, monitor="auto")
    run = SimpleNamespace(regression=False, config=config, fingerprint="", architecture="", best_weights=None,
                          save_best=lambda model: saved.append("best.keras"), save_epoch=lambda model, meta: None)  # fmt: skip
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    progress = Progress()
    callback = training.KeepProgress(run, progress, steps_per_epoch=1)
    callback.set_model(model)
    for epoch in range(3):
        callback.on_epoch_end(
            epoch, {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.75}
        )
    assert progress.best_epoch == 1 and saved == ["best.keras"]
    assert progress.stopped_early == 3 and model.stop_training


def test_plateau_and_early_stopping_resume_exactly(tmp_path, plateau_run):
    rows = read_history(plateau_run[0])
    # Killed after the epoch before the first halving: the plateau has waited one epoch (a
    # resume that forgot it would not halve the rate after the next), and early stopping
    # has seen no better accuracy since an earlier epoch.
    epoch = [r["learning_rate"] for r in rows].index(1.0)
    accuracies = [r["val_accuracy"] for r in rows[:epoch]]
    assert 1 + accuracies.index(max(accuracies)) < epoch
    out = tmp_path / "run"
    run_until_epoch("train_gru.py", PLATEAU, out, epoch=epoch)
    result = run_here("train_gru.py", "--resume", out)
    assert result.returncode == 0, explain(result)
    assert read_metrics(out)["resumed_after_epoch"] == epoch
    assert without_seconds(read_history(out)) == without_seconds(
        read_history(plateau_run[0])
    )
    assert (
        read_metrics(out)["stopped_early_at_epoch"]
        == read_metrics(plateau_run[0])["stopped_early_at_epoch"]
    )
    assert_same_weights(out, plateau_run[0])


def test_cosine_decays_the_learning_rate_over_the_runs_steps(cosine_run):
    out, _ = cosine_run
    steps_per_epoch = math.ceil(270 / 64)
    total = 3 * steps_per_epoch
    expected = [
        0.001 * 0.5 * (1 + math.cos(math.pi * e * steps_per_epoch / total))
        for e in (1, 2, 3)
    ]
    np.testing.assert_allclose(
        [r["learning_rate"] for r in read_history(out)], expected, atol=1e-9
    )
    settings = read_metrics(out)["settings_in_effect"]
    assert settings["optimizer"] == "RMSprop" and settings["clipnorm"] == 0.5


def test_cosine_resumes_exactly_and_tensorboard_appends_to_the_same_logs(
    tmp_path, cosine_run
):
    out = tmp_path / "run"
    run_until_epoch("train_lstm.py", COSINE, out, epoch=1)
    result = run_here("train_lstm.py", "--resume", out)
    assert result.returncode == 0, explain(result)
    assert without_seconds(read_history(out)) == without_seconds(
        read_history(cosine_run[0])
    )
    assert_same_weights(out, cosine_run[0])
    assert scalars(out / "logs" / "train") == scalars(cosine_run[0] / "logs" / "train")


def test_an_epoch_logged_before_its_state_was_saved_is_logged_once(tmp_path, cosine_run):
    """Killed after TensorBoard wrote epoch 2 but before epoch 2's state was saved: the
    resumed run trains epoch 2 again, to the same figures, and does not log it again."""
    out = tmp_path / "run"
    run_until_epoch("train_lstm.py", COSINE, out, epoch=2)
    (out / "training-state" / "epoch-0002.npz").unlink()  # as if the kill had come first
    assert (out / "logs" / "epochs-logged").read_text() == "2"
    result = run_here("train_lstm.py", "--resume", out)
    assert result.returncode == 0 and "after epoch 1" in result.stdout, explain(result)
    assert scalars(out / "logs" / "train") == scalars(cosine_run[0] / "logs" / "train")


def scalars(folder):
    """{tag: [(step, value), ...]} from every TensorBoard event file in a folder."""
    import tensorflow as tf

    found = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                number = (
                    float(tf.make_ndarray(value.tensor))
                    if value.HasField("tensor")
                    else value.simple_value
                )
                found.setdefault(value.tag, []).append((event.step, round(number, 6)))
    return {tag: sorted(points) for tag, points in found.items()}


def test_tensorboard_logs_every_epochs_scalars_and_the_learning_rate(cosine_run):
    out, _ = cosine_run
    train, validation = (
        scalars(out / "logs" / "train"),
        scalars(out / "logs" / "validation"),
    )
    assert [step for step, _ in train["epoch_loss"]] == [0, 1, 2]
    rates = [value for _, value in train["epoch_learning_rate"]]
    assert rates == [round(r["learning_rate"], 6) for r in read_history(out)]
    assert [step for step, _ in validation["epoch_accuracy"]] == [0, 1, 2]


def test_history_and_curves_are_rewritten_after_every_epoch(tmp_path):
    """A callback of the script's own looks at the files as each epoch begins: they hold
    every epoch before it."""
    import keras

    import common
    import train_gru

    out, seen = tmp_path / "run", []

    class Watch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch:
                curves = image(out / "curves.png").shape[:2]
                seen.append(([r["epoch"] for r in read_history(out)], curves))

    argv = [*PLATEAU[:6], "--epochs", "3", "--output-dir", out]
    common.run(train_gru.build_model, argv=argv, callbacks=lambda: [Watch()])
    assert seen == [([1], (400, 1000)), ([1, 2], (400, 1000))]


def test_the_monitored_figure_picks_best_keras_and_early_stopping_and_is_recorded(
    tmp_path,
):
    import json

    out = tmp_path / "run"
    args = [
        *PLATEAU[:8],
        "--epochs",
        "8",
        "--early-stopping",
        "2",
        "--monitor",
        "val_loss",
    ]
    result = run_here("train_gru.py", *args, "--output-dir", out)
    assert result.returncode == 0, explain(result)
    rows, metrics = read_history(out), read_metrics(out)
    best = min(rows, key=lambda r: r["val_loss"])
    assert metrics["best_epoch"] == best["epoch"] and metrics["monitor"] == "val_loss"
    assert metrics["stopped_early_at_epoch"] in (None, best["epoch"] + 2)
    assert (
        json.loads((out / "args.json").read_text())["arguments"]["monitor"] == "val_loss"
    )
    wrong = run_here(
        "train_gru.py", *args[:-1], "val_f1", "--output-dir", tmp_path / "f1"
    )
    assert (
        wrong.returncode == 2
        and "--monitor val_f1: not a figure the run logs (accuracy, loss, val_accuracy, val_loss)"
        in wrong.stderr
    )
