"""Forecasting end to end (--target, --window, --horizon): a run on an hourly series with a
date column learns the next values, its splits never share a target row, predict.py takes a
.csv of the same columns (the value after its last window) and evaluates every window of a
labelled one, the export says what it takes, and a run stopped after an epoch resumes
exactly.

The run is conftest.py's finished("series"), trained once per test process.
"""

import csv
import json
import shutil

import numpy as np
import pytest
from conftest import SERIES

from files import write_series
from helpers import (
    explain,
    predict_here,
    read_history,
    read_metrics,
    run_here,
    run_until_epoch,
)
from rnn_scripts.data.core import Layout
from rnn_scripts.data.own import load_series
from rnn_scripts.errors import InputError

WINDOW, HORIZON = 12, 2


def window_of(rows, spec):
    """The run's standardisation of raw rows, read from its preprocessing.json here."""
    return np.asarray(rows, np.float32) * np.float32(spec["scale"]) + np.float32(
        spec["offset"]
    )


def test_a_forecast_learns_the_next_values_in_their_units(finished):
    run = finished("series")
    metrics = read_metrics(run)
    temp = write_series(run.parent / "again.csv")  # the same series, for its spread
    assert metrics["dataset"]["kind"] == "series" and metrics["dataset"]["targets"] == [
        "temp"
    ]
    # far below its spread
    assert metrics["test_mae"] < np.abs(temp - temp.mean()).mean() / 3
    assert metrics["test_r2"] > 0.8
    best = min(read_history(run), key=lambda row: row["val_loss"])["epoch"]
    assert metrics["best_epoch"] == best and metrics["monitor"] == "val_loss"


def test_the_splits_of_a_series_never_share_a_target_row(tmp_path):
    """A series whose column `row` is its row number: each split's targets are the rows
    they forecast, and each window holds the WINDOW rows that end HORIZON before it."""
    rows = np.arange(300)
    noise = np.random.default_rng(0).normal(size=300)
    lines = ["date,row,noise"] + [f"day {r},{r},{n:.4f}" for r, n in zip(rows, noise)]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    data = load_series(
        tmp_path / "rows.csv", Layout(target="row", window=WINDOW, horizon=HORIZON), 0.2
    )
    targets = {
        name: getattr(data, name).y[:, 0].astype(int)
        for name in ("train", "validation", "test")
    }
    assert targets["train"].max() < targets["validation"].min()
    assert (
        targets["validation"].max() < targets["test"].min()
        and targets["test"].max() == 299
    )
    assert sum(map(len, targets.values())) == len(
        set(np.concatenate(list(targets.values())))
    )
    for name in targets:
        split = getattr(data, name)
        windows = split.x.read(np.arange(len(split)))[
            :, :, 0
        ]  # the row numbers each holds
        expected = targets[name][:, None] - HORIZON - np.arange(WINDOW)[::-1]
        np.testing.assert_array_equal(windows, expected)
        assert not set(windows.ravel()) & set().union(
            *(set(t) for n, t in targets.items() if n != name)
        )


def test_separate_validation_and_test_series_and_chosen_columns(tmp_path):
    for name, start in (("train", 0), ("validation", 400), ("test", 500)):
        write_series(
            tmp_path / f"{name}.csv", rows=100 if name != "train" else 400, start=start
        )
    layout = Layout(target="temp", window=WINDOW, horizon=HORIZON, ignore=("humidity",))
    files = {
        "validation_path": tmp_path / "validation.csv",
        "test_path": tmp_path / "test.csv",
    }
    data = load_series(tmp_path / "train.csv", layout, 0.1, **files)
    count = 100 - WINDOW - HORIZON + 1
    assert (
        len(data.validation) == len(data.test) == count
        and len(data.train) == 400 - WINDOW - HORIZON + 1
    )
    assert data.series["columns"] == ["temp"] and data.train.x.read(
        np.arange(2)
    ).shape == (2, WINDOW, 1)
    (tmp_path / "other.csv").write_text(
        (tmp_path / "test.csv").read_text().replace("humidity", "wind")
    )
    with pytest.raises(Exception, match="other.csv: its feature columns are"):
        load_series(
            tmp_path / "train.csv",
            Layout(target="temp", window=WINDOW, horizon=HORIZON),
            0.1,
            test_path=tmp_path / "other.csv",
        )


def test_predict_reads_a_series_csv_and_forecasts_after_its_last_window(
    finished, tmp_path
):
    import keras

    run = finished("series")
    write_series(tmp_path / "recent.csv", rows=40, start=1000)
    found = predict_here(run, "recent.csv", "--json", cwd=tmp_path)
    assert found.returncode == 0, explain(found)
    [row] = [json.loads(line) for line in found.stdout.splitlines()]
    with open(tmp_path / "recent.csv") as stream:
        rows = [
            [float(r["temp"]), float(r["humidity"])] for r in csv.DictReader(stream)
        ][-WINDOW:]
    spec = json.loads((run / "preprocessing.json").read_text())
    model = keras.saving.load_model(run / "model.keras")
    expected = model.predict(window_of([rows], spec), verbose=0)[0, 0]
    assert row["input"] == "recent.csv" and row["values"]["temp"] == pytest.approx(
        expected, abs=1e-4
    )


def test_labels_evaluate_every_window_named_by_the_time_column(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished("series"), run)
    write_series(tmp_path / "history.csv", rows=60, start=2000)
    result = predict_here(run, "history.csv", "--labels", cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    with open(run / "predictions.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 60 - WINDOW - HORIZON + 1
    assert list(rows[0]) == ["input", "predicted temp", "true temp"]
    first_target = 2000 + WINDOW + HORIZON - 1  # the row each window forecasts
    assert (
        rows[0]["input"]
        == f"2024-01-{1 + first_target // 24:02d}T{first_target % 24:02d}"
    )
    errors = [abs(float(r["predicted temp"]) - float(r["true temp"])) for r in rows]
    assert result.stdout.splitlines()[0].startswith(f"mae {np.mean(errors):.6g}")
    again = predict_here(run, "history.csv", "--labels", cwd=tmp_path)
    assert "replacing the one there" in again.stdout.splitlines()[-1]  # never silently


def test_a_window_of_another_length_is_one_line_in_predict_and_the_python_api(
    finished, tmp_path
):
    from rnn_scripts.serving import TrainedRun

    run = finished("series")
    np.save(tmp_path / "long.npy", np.zeros((1, 2 * WINDOW, 2), np.float32))
    refused = predict_here(run, "long.npy", cwd=tmp_path)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, explain(refused)
    assert f"expected windows of {WINDOW} steps x 2 values" in refused.stderr
    with pytest.raises(
        InputError,
        match=r"expected windows of 12 steps x 2 values, or a batch of them, got float32 \(1, 24, 2\)",
    ):
        TrainedRun(run).predict(np.zeros((1, 2 * WINDOW, 2)))
    # one window
    assert TrainedRun(run).predict(np.zeros((WINDOW, 2))).values.shape == (1, 1)


def test_the_export_says_what_it_takes_and_returns_the_forecast(finished, tmp_path):
    import keras
    import onnxruntime

    from helpers import call_here
    from rnn_scripts.export import main

    run = finished("series")
    done = call_here(main, [run, "--format", "onnx", "--output", tmp_path / "served"])
    assert done.returncode == 0, explain(done)
    served = json.loads((tmp_path / "served" / "serving.json").read_text())
    assert served["series"] == {
        "columns": ["temp", "humidity"],
        "target": "temp",
        "window": WINDOW,
        "horizon": HORIZON,
    }
    assert (
        served["targets"] == ["temp"]
        and "the last 12 rows of the columns temp, humidity" in served["input"]
    )
    rows = (
        np.random.default_rng(3)
        .normal([15, 30], [8, 16], (4, WINDOW, 2))
        .astype(np.float32)
    )
    session = onnxruntime.InferenceSession(str(tmp_path / "served" / "model.onnx"))
    found = session.run(None, {session.get_inputs()[0].name: rows})[0]
    spec = json.loads((run / "preprocessing.json").read_text())
    expected = keras.saving.load_model(run / "model.keras").predict(
        window_of(rows, spec), verbose=0
    )
    np.testing.assert_allclose(found, expected, atol=1e-4)


def test_a_series_run_stopped_after_an_epoch_resumes_exactly(finished, tmp_path):
    from test_resume import assert_same_training

    whole = finished("series")
    write_series(tmp_path / "weather.csv")
    args = [
        "--data",
        tmp_path / "weather.csv",
        *SERIES,
        "--epochs",
        "4",
        "--units",
        "16",
    ]
    args += ["--num-layers", "1", "--learning-rate", "0.01"]
    run_until_epoch("train_lstm.py", args, tmp_path / "run", epoch=2)
    resumed = run_here("train_lstm.py", "--resume", tmp_path / "run")
    assert resumed.returncode == 0 and "after epoch 2" in resumed.stdout, explain(
        resumed
    )
    assert_same_training(tmp_path / "run", whole)
