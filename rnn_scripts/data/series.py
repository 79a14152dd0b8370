"""Forecasting: a .csv of time-series columns, one row per time step, windowed.

    python train_lstm.py --data weather.csv --target "T (degC)" --window 24 --horizon 6

Every numeric column is a feature (columns of text, such as a date, are left out with a
line saying so); each example is `--window` consecutive rows, and its target the --target
column `--horizon` rows after the window's last one. The series is split by time, not at
random (a shuffled split would test on the training windows' neighbours): the last
TEST_FRACTION of the rows is the test split, the last --validation-split of the rest the
validation split, each with its own windows. --validation-data and --test-data give
separate series instead.

The series is held once, as float32; windows are cut from it batch by batch (rows.Windows,
the same windows keras.utils.timeseries_dataset_from_array makes: a test checks it).
"""

import array

import numpy as np

from ..errors import say
from .core import TEST_FRACTION, Data, DataError, Split, Targets, check_representable
from .rows import Windows
from .tables import open_table


def read_series(path, config):
    """(series as float32 rows x features, feature names, target column index)."""
    table = open_table(path, config.delimiter)
    if table.header is None:
        raise DataError(
            f"{path}: a series needs a header naming its columns (--target COLUMN)"
        )
    target = table.column(config.target, "--target")
    width = len(table.header)
    columns = [array.array("d") for _ in range(width)]
    text_columns, lines = {}, 0
    for _, _, fields, line in table.records():
        table.check_width(fields, line, width)
        lines += 1
        for i, field in enumerate(fields):
            if i in text_columns:
                continue
            try:
                columns[i].append(float(field))
            except ValueError:
                text_columns[i] = (line, field.strip())
    if target in text_columns:
        line, field = text_columns[target]
        raise DataError(
            f"{path}: line {line}: the --target column {config.target!r} holds text ({field!r}); it needs numbers"
        )
    if lines == 0:
        raise DataError(f"{path}: no rows below the header")
    kept = [i for i in range(width) if i not in text_columns]
    for i in sorted(text_columns):
        say(
            f"leaving out column {table.header[i]!r} of {path}: it holds text ({text_columns[i][1]!r})"
        )
    series = np.stack([np.frombuffer(columns[i], np.float64) for i in kept], axis=1)
    check_representable(series, str(path))
    return series.astype(np.float32), [table.header[i] for i in kept], kept.index(target)


def windows(series, target, window, horizon, where):
    """Windows of `series` and their targets, the value `horizon` rows after each window."""
    count = len(series) - window - horizon + 1
    if count <= 0:
        raise DataError(
            f"{where}: {len(series)} rows, too few for --window {window} and --horizon "
            f"{horizon} (at least {window + horizon})"
        )
    starts = np.arange(count)
    return Split(
        Windows(series, starts, window),
        series[starts + window + horizon - 1, target][:, None].copy(),
    )


def load_series(config):
    series, names, target = read_series(config.data, config)
    if len(series) < config.window + config.horizon:
        raise DataError(
            f"{config.data}: the series has {len(series)} rows, too few for --window "
            f"{config.window} and --horizon {config.horizon} (at least {config.window + config.horizon})"
        )
    cut = lambda rows, where: windows(rows, target, config.window, config.horizon, where)  # noqa: E731
    test_rows = (
        int(round(len(series) * TEST_FRACTION)) if config.test_data is None else 0
    )
    rest = series[: len(series) - test_rows]
    validation_rows = (
        int(round(len(rest) * config.validation_split))
        if config.validation_data is None
        else 0
    )
    train = cut(rest[: len(rest) - validation_rows], f"{config.data} (training rows)")
    data = Data(
        train,
        None,
        "sequences",
        Targets("regression", (config.target,)),
        config.data.stem,
        str(config.data),
    )
    data.series = {
        "columns": names,
        "target": config.target,
        "window": config.window,
        "horizon": config.horizon,
    }
    for role, path, rows in (
        ("test", config.test_data, series[len(series) - test_rows :]),
        ("validation", config.validation_data, rest[len(rest) - validation_rows :]),
    ):
        if path is not None:
            other, other_names, _ = read_series(path, config)
            if other_names != names:
                raise DataError(
                    f"{path}: its numeric columns are {other_names}, the training series' {names}"
                )
            rows, where = other, str(path)
        else:
            where = f"{config.data} ({role} rows: the last {len(rows)})"
        if len(rows):
            setattr(data, role, cut(rows, where))
    if data.validation is None:  # --validation-split 0
        data.validation = train.take(np.arange(0))
    return data
