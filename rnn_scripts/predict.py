"""Predict with a finished run: images, arrays, texts, a series, or a labelled file to
evaluate.

python predict.py RUN digit.png other.png        # image runs (MNIST, your uint8 images)
python predict.py RUN examples.npy               # arrays shaped like the run's examples
python predict.py RUN "a wonderful film" -       # text runs: sentences, text files, - =
stdin python predict.py RUN --text awful               # every INPUT is text, even a
file's name python predict.py RUN recent.csv                 # a series run: the value
after its last window python predict.py RUN examples.npz --json        # one JSON object
per example python predict.py RUN test.csv --labels          # RUN/predictions.csv and
the metrics

RUN is a run folder (runs/SCRIPT-TIME); its preprocessing.json says how a raw input
becomes the model's input, the same way as in training (kinds.py reads each kind's
inputs). Inputs are checked before Keras loads.
"""

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

from .errors import EXIT_FAILED, UserError, fail, first_line, say
from .kinds import ARRAY_SUFFIXES

MAX_PATH_BYTES = 255  # a longer argument cannot be a file name: it is text


def parse_arguments(argv):
    from .cli import BACKENDS, OneLineParser, one_character

    parser = OneLineParser(
        prog="predict.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    add = parser.add_argument
    add("run_dir", type=Path, metavar="RUN", help="a finished run's folder")
    add("inputs", nargs="+", metavar="INPUT", help="files, texts or - (standard input)")
    add(
        "--model",
        choices=("final", "best"),
        default="final",
        help="model.keras (final) or best.keras (best epoch)",
    )
    add("--json", action="store_true", help="print JSON lines")
    add(
        "--text",
        action="store_true",
        help="text runs: every INPUT is text, not a file name",
    )
    add(
        "--labels",
        action="store_true",
        help="INPUT is a labelled file (as --data): the predictions and the metrics",
    )
    add(
        "--output",
        type=Path,
        help="--labels: where the predictions go (default RUN/predictions.csv)",
    )
    add(
        "--delimiter",
        type=one_character,
        help=".csv inputs: the column separator (unset: sniffed)",
    )
    add("--word-index", type=Path, help="IMDB runs: imdb_word_index.json")
    add("--backend", choices=BACKENDS, help="Keras backend")
    add("--verbose", action="store_true", help="show the backend's log")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    try:
        from .preprocess import Preprocessing

        preprocessing = Preprocessing.load(args.run_dir)
        if args.labels:
            return evaluate_file(args, preprocessing)
        examples = [
            e for text in args.inputs for e in read_input(text, preprocessing.kind, args)
        ]
        if not examples:
            raise UserError("no examples to predict")
        run = trained_run(args)
        for label, found in predicted(run, examples):
            print_prediction(label, found, preprocessing, args.json)
    except UserError as error:
        fail(f"error: {error}", EXIT_FAILED)
    except BrokenPipeError:  # e.g. | head: the reader has what it wanted
        sys.stderr.close()


def trained_run(args):
    """The run's model, with Keras loaded quietly on the backend asked for."""
    from .environment import quiet_keras

    quiet_keras(args.backend, args.verbose)
    from .serving import TrainedRun

    return TrainedRun(args.run_dir, args.model)


def predicted(run, examples):
    """(label, one example's outputs) in input order; inputs of one shape go through the
    model together."""
    groups = {}
    for i, (_, example) in enumerate(examples):
        key = example.shape if isinstance(example, np.ndarray) else "text"
        groups.setdefault(key, []).append(i)
    found = [None] * len(examples)
    for rows in groups.values():
        batch = [examples[i][1] for i in rows]
        prepared = run.prepare(
            batch if isinstance(batch[0], str | list) else np.stack(batch)
        )
        for i, row in zip(rows, run.predict_prepared(prepared).outputs):
            found[i] = row
    return [(label, row) for (label, _), row in zip(examples, found)]


def print_prediction(label, row, preprocessing, as_json):
    names = preprocessing.class_names
    if preprocessing.is_regression:
        values = {name: float(v) for name, v in zip(names, row)}
        line = ", ".join(f"{name} {v:.6g}" for name, v in values.items())
        say(
            json.dumps({"input": label, "values": values})
            if as_json
            else f"{label}: {line}"
        )
        return
    best = int(np.argmax(row))
    if as_json:
        probabilities = dict(zip(names, map(float, row)))
        found = {"input": label, "class": names[best], "class_id": best}
        say(
            json.dumps(
                {
                    **found,
                    "probability": float(row[best]),
                    "probabilities": probabilities,
                }
            )
        )
    else:
        say(f"{label}: {names[best]} ({row[best]:.3f})")


# --------------------------------------------------------------------------------------
# Inputs: (label, raw example) pairs, checked before Keras loads
# --------------------------------------------------------------------------------------
def read_input(text, kind, args):
    if text == "":
        say("warning: an empty argument was skipped", sys.stderr)
        return []
    if text == "-" and not args.text:
        return read_texts(read_stdin(), "stdin", kind, args)
    if kind.reads_text and (args.text or not names_a_file(text)):
        return read_texts([text], None, kind, args)
    path = Path(text)
    if not names_a_file(text):
        kinds = "" if kind.reads_text else f" (this run reads {kind.name} from files)"
        raise UserError(f"{path}: file not found{kinds}")
    if kind.reads_text and path.suffix.lower() not in ARRAY_SUFFIXES:
        say(
            f"warning: {text!r} is a file here and is read as one (--text reads it as "
            "text)",
            sys.stderr,
        )
        return read_texts(read_text_file(path), text, kind, args)
    return kind.read_input(text, path, args)


def names_a_file(text):
    """Whether text names an existing file (a long sentence or a line break cannot)."""
    if (
        len(text.encode(errors="replace")) > MAX_PATH_BYTES
        or "\n" in text
        or "\0" in text
    ):
        return False
    try:
        return Path(text).is_file()
    except OSError:
        return False


def read_stdin():
    try:
        if sys.stdin is None or sys.stdin.closed:
            raise UserError("-: standard input is closed")
        return sys.stdin.read().splitlines()
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise UserError(f"-: cannot read standard input ({first_line(error)})") from None


def read_text_file(path):
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(
            f"{path}: not a readable UTF-8 text file ({first_line(error)})"
        ) from None


def read_texts(lines, source, kind, args):
    """Non-blank lines, labelled with their line numbers in the source (or shortened)."""
    if not hasattr(kind, "read_text"):
        raise UserError(f"this run reads {kind.name}, not texts: pass .npy files")
    found = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if not found:
        raise UserError(f"{source or 'the input'}: no text to classify")
    labels = [
        f"{source}:{number}" if source else shorten(line) for number, line in found
    ]
    return list(zip(labels, kind.read_text([line for _, line in found], args)))


def shorten(text, width=40):
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 3] + "...")


# --------------------------------------------------------------------------------------
# --labels: a labelled file, evaluated
# --------------------------------------------------------------------------------------
def evaluate_file(args, preprocessing):
    """Read INPUT as the run read its --test-data, predict every example, write
    RUN/predictions.csv (input, prediction, probability or value, true) and the
    metrics."""
    if len(args.inputs) != 1:
        raise UserError("--labels evaluates one file (or folder) at a time")
    x, y, inputs = labelled(Path(args.inputs[0]), args, preprocessing)
    run = trained_run(args)
    found = np.concatenate(
        [run.predict_prepared(batch).outputs for batch in batches_of(x, run.kind)]
    )
    output = args.output or args.run_dir / "predictions.csv"
    replaced = output.exists()
    write_predictions(output, inputs, found, y, preprocessing)
    for line in metric_lines(found, y, preprocessing):
        say(line)
    say(
        f"wrote {output} ({len(found)} "
        f"predictions{', replacing the one there' if replaced else ''})"
    )


def labelled(path, args, preprocessing):
    """(raw examples, targets in the run's classes, their names) of a labelled file, read
    with the arguments the run was trained with."""
    from .config import Config
    from .data import DataError, Targets, layout_of
    from .data.core import same_targets
    from .rundir import RunDir

    saved = Config.from_json(RunDir(args.run_dir).saved_arguments()["arguments"])
    try:
        if "series" in preprocessing.spec:
            from .data.series import labelled_windows

            split, names = labelled_windows(
                path, preprocessing.spec["series"], args.delimiter or saved.delimiter
            )
            return split.x, split.y, names
        from .data.own import read_parts

        part = read_parts(path, preprocessing.kind.reads, layout_of(saved), role="test")[
            "train"
        ]
        targets = Targets(preprocessing.spec["task"], tuple(preprocessing.class_names))
        y = same_targets(targets, part.labels, part.labels_where)
    except DataError as error:
        raise UserError(str(error)) from None
    files = getattr(part.x, "paths", None)
    inputs = (
        [str(n) for n in files]
        if files is not None
        else [f"{path}[{i}]" for i in range(len(y))]
    )
    return part.x, y, inputs


def batches_of(x, kind, size=1024):
    """The serving model's input, a batch at a time (raw examples, texts vectorised)."""
    from .data.core import take

    for start in range(0, len(x), size):
        rows = np.arange(start, min(start + size, len(x)))
        yield kind.raw_batch(x.read(rows) if hasattr(x, "read") else take(x, rows))


def write_predictions(path, inputs, found, y, preprocessing):
    names = preprocessing.class_names
    try:
        with open(path, "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            if preprocessing.is_regression:
                writer.writerow(
                    [
                        "input",
                        *[f"predicted {n}" for n in names],
                        *[f"true {n}" for n in names],
                    ]
                )
                for label, row, true in zip(inputs, found, y):
                    writer.writerow(
                        [
                            label,
                            *(f"{v:.6g}" for v in row),
                            *(f"{v:.6g}" for v in np.ravel(true)),
                        ]
                    )
            else:
                writer.writerow(["input", "prediction", "probability", "true"])
                for label, row, true in zip(inputs, found, y):
                    best = int(row.argmax())
                    writer.writerow(
                        [label, names[best], f"{row[best]:.6f}", names[int(true)]]
                    )
    except OSError as error:
        raise UserError(f"could not write {path}: {error.strerror or error}") from None


def metric_lines(found, y, preprocessing):
    from .outputs import confusion_matrix, per_class_accuracy, regression_metrics

    names = preprocessing.class_names
    if preprocessing.is_regression:
        metrics = regression_metrics(y, found, names)
        lines = [f"{figures(metrics)}  ({len(found)} examples)"]
        if len(names) > 1:
            lines += [f"  {n}: {figures(m)}" for n, m in metrics["per_target"].items()]
        return lines
    counts = confusion_matrix(np.asarray(y, int), found.argmax(axis=1), len(names))
    accuracy = np.trace(counts) / counts.sum()
    lines = [
        f"accuracy {accuracy:.4f}  ({int(np.trace(counts))} of {counts.sum()} right)"
    ]
    for name, value in per_class_accuracy(counts, names).items():
        shown = "no examples" if value is None or math.isnan(value) else f"{value:.4f}"
        lines.append(f"  {name}: {shown}")
    return lines


def figures(metrics):
    r2 = "" if metrics["r2"] is None else f"  r2 {metrics['r2']:.4f}"
    return f"mae {metrics['mae']:.6g}  rmse {metrics['rmse']:.6g}{r2}"


if __name__ == "__main__":
    main()
