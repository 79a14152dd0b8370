"""Forecasting: a .csv of time-series columns, one row per time step, windowed.

    python train_lstm.py --data weather.csv --target "T (degC)" --window 24 --horizon 6

The features are every numeric column (or --feature-columns, less --ignore-columns); a
column of text, such as a date, is left out and names the rows where predictions are
listed. Each example is `window` consecutive rows, and its target the --target column
`horizon` rows after the window's last one. The series is split by time, not at random (a
shuffled split would test on the training windows' neighbours): the last TEST_FRACTION of
the rows is the test split, the last --validation-split of the rest the validation split,
each with its own windows, so that no two splits share a target row. --validation-data
and --test-data give separate series instead.

The series is held once, as float32; windows are cut from it batch by batch
(rows.Windows, the same windows keras.utils.timeseries_dataset_from_array makes: a test
checks it).
"""

import array

import numpy as np

from ..errors import say
from .core import DataError, Layout, Split, check_representable
from .rows import Windows
from .tables import open_table


class Series:
    """A file's series: rows x features as float32, the feature names, the target's
    index among them, and the time column's values (None where there is none)."""

    def __init__(self, path, layout, quiet=False):
        table = open_table(path, layout.delimiter)
        if table.header is None:
            raise DataError(
                f"{path}: a series needs a header naming its columns (--target COLUMN)"
            )
        target = table.column(layout.target, "--target")
        columns, text, times = read_columns(table)
        named = layout.features or [
            c for i, c in enumerate(table.header) if i not in text
        ]
        for name in (*layout.features, *layout.ignore):
            flag = "--feature-columns" if name in layout.features else "--ignore-columns"
            index = table.column(name, flag)
            if index in text:
                line, field = text[index]
                raise DataError(
                    f"{path}: line {line}: the {flag} column {name!r} holds text "
                    f"({field!r})"
                )
        if target in text:
            line, field = text[target]
            raise DataError(
                f"{path}: line {line}: the --target column {layout.target!r} holds text "
                f"({field!r}); it needs numbers"
            )
        if layout.target in layout.ignore or layout.target not in named:
            raise DataError(
                f"{path}: the --target column {layout.target!r} must be a feature too "
                "(add it to --feature-columns, or leave it out of --ignore-columns)"
            )
        self.names = [c for c in named if c not in layout.ignore]
        kept = [table.header.index(c) for c in self.names]
        if not quiet:
            for i in sorted(text):
                say(
                    f"leaving out column {table.header[i]!r} of {path}: it holds text "
                    f"({text[i][1]!r})"
                )
        self.rows = np.stack(
            [np.frombuffer(columns[i], np.float64) for i in kept], axis=1
        )
        check_representable(self.rows, str(path))
        self.rows = self.rows.astype(np.float32)
        self.target, self.path = self.names.index(layout.target), path
        self.times = times.get(min(text)) if text else None

    def windows(self, window, horizon, where, rows=None):
        """Split of the windows of the rows `rows` (a slice; all), and their targets."""
        series = self.rows[rows] if rows is not None else self.rows
        count = len(series) - window - horizon + 1
        if count <= 0:
            raise DataError(
                f"{where}: {len(series)} rows, too few for --window {window} and "
                f"--horizon {horizon} (at least {window + horizon})"
            )
        starts = np.arange(count)
        targets = series[starts + window + horizon - 1, self.target][:, None].copy()
        return Split(Windows(series, starts, window), targets)


def read_columns(table):
    """(numeric columns, {text column: (line, first text)}, {text column: values})."""
    width = len(table.header)
    columns = [array.array("d") for _ in range(width)]
    text, times, lines = {}, {}, 0
    for _, _, fields, line in table.records():
        table.check_width(fields, line, width)
        lines += 1
        for i, field in enumerate(fields):
            if i in text:
                times[i].append(field.strip())
                continue
            try:
                columns[i].append(float(field))
            except ValueError:
                text[i] = (line, field.strip())
                times[i] = [str(v) for v in columns[i]] + [field.strip()]
    if lines == 0:
        raise DataError(f"{table.path}: no rows below the header")
    return columns, text, times


def layout_of(spec, delimiter=None):
    """The Layout a trained series run reads new files with (its serving spec)."""
    columns, target = tuple(spec["columns"]), spec["target"]
    return Layout(delimiter=delimiter, features=columns, target=target,
                  window=spec["window"], horizon=spec["horizon"])  # fmt: skip


def last_window(path, spec, delimiter=None):
    """predict.py RUN recent.csv: the last `window` rows of the run's feature columns."""
    series = Series(path, layout_of(spec, delimiter), quiet=True)
    if len(series.rows) < spec["window"]:
        raise DataError(
            f"{path}: {len(series.rows)} rows; this run's window is {spec['window']} "
            "rows"
        )
    return series.rows[-spec["window"] :]


def labelled_windows(path, spec, delimiter=None):
    """predict.py RUN history.csv --labels: every window and its target, each named by
    its target row's time (or its number)."""
    series = Series(path, layout_of(spec, delimiter), quiet=True)
    split = series.windows(spec["window"], spec["horizon"], str(path))
    first = spec["window"] + spec["horizon"] - 1
    rows = range(first, first + len(split))
    names = [series.times[r] if series.times else f"{path}[row {r + 1}]" for r in rows]
    return split, names
