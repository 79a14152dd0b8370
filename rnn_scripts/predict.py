"""Predict with a finished run: images, arrays, texts, or a labelled file to evaluate.

python predict.py RUN digit.png other.png        # image runs (MNIST, your uint8 images)
python predict.py RUN examples.npy               # arrays shaped like the run's examples
python predict.py RUN "a wonderful film" -       # text runs: sentences, text files, - = stdin
python predict.py RUN --text awful               # every INPUT is text, even a file's name
python predict.py RUN examples.npz --json        # one JSON object per example
python predict.py RUN test.csv --labels          # predictions.csv and the metrics

RUN is a run folder (runs/SCRIPT-TIME); its preprocessing.json says how a raw input becomes
the model's input, the same way as in training. Inputs are checked before Keras loads.
"""

import argparse
import csv
import json
import math
import os
import struct
import sys
from pathlib import Path

import numpy as np

from .errors import EXIT_FAILED, UserError, fail, first_line, say
from .preprocess import MAX_IMAGE_PIXELS

IMAGE_SUFFIXES, ARRAY_SUFFIXES = (".png",), (".npy", ".npz")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PATH_BYTES = 255  # a longer argument cannot be a file name: it is text
WORD_INDEX_URL = (
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb_word_index.json"
)


def parse_arguments(argv):
    from .cli import BACKENDS, OneLineParser

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
        help="model.keras (final) or best.keras (best validation epoch)",
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
        help="INPUT is a labelled file (as --data): write the predictions and print the metrics",
    )
    add(
        "--output",
        type=Path,
        default=Path("predictions.csv"),
        help="--labels: where the predictions go",
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
            e for text in args.inputs for e in read_input(text, preprocessing, args)
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


def load_keras(args):
    """Keras, loaded quietly on the backend asked for."""
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    if not args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from .environment import import_tensorflow_quietly

        import_tensorflow_quietly()
    import keras

    return keras


def trained_run(args):
    """The run's model, with Keras loaded quietly on the backend asked for."""
    load_keras(args)
    from .serving import TrainedRun

    return TrainedRun(args.run_dir, args.model)


def predicted(run, examples):
    """(label, one example's Predictions row) in input order; inputs of one shape go
    through the model together."""
    groups = {}
    for i, (_, example) in enumerate(examples):
        key = example.shape if isinstance(example, np.ndarray) else "text"
        groups.setdefault(key, []).append(i)
    found = [None] * len(examples)
    for rows in groups.values():
        batch = [examples[i][1] for i in rows]
        prepared = run.prepare(
            batch if isinstance(batch[0], (str, list)) else np.stack(batch)
        )
        predictions = run.predict_prepared(prepared)
        for i, row in zip(rows, predictions.outputs):
            found[i] = row
    return [(label, row) for (label, _), row in zip(examples, found)]


def print_prediction(label, row, preprocessing, as_json):
    names = preprocessing.class_names
    if preprocessing.is_regression:
        values = {name: float(v) for name, v in zip(names, row)}
        if as_json:
            say(json.dumps({"input": label, "values": values}))
        else:
            say(
                f"{label}: " + ", ".join(f"{name} {v:.6g}" for name, v in values.items())
            )
        return
    best = int(np.argmax(row))
    if as_json:
        say(json.dumps({"input": label, "class": names[best], "class_id": best, "probability": float(row[best]),
                        "probabilities": dict(zip(names, map(float, row)))}))  # fmt: skip
    else:
        say(f"{label}: {names[best]} ({row[best]:.3f})")


# --------------------------------------------------------------------------------------
# Inputs: (label, raw example) pairs, checked before Keras loads
# --------------------------------------------------------------------------------------
def read_input(text, preprocessing, args):
    if text == "":
        say("warning: an empty argument was skipped", sys.stderr)
        return []
    if text == "-" and not args.text:
        return read_texts(read_stdin(), "stdin", preprocessing, args)
    if preprocessing.reads_text and (args.text or not names_a_file(text)):
        return read_texts([text], None, preprocessing, args)
    path, suffix = Path(text), Path(text).suffix.lower()
    if not names_a_file(text):
        kinds = (
            ""
            if preprocessing.reads_text
            else f" (this run reads {preprocessing.kind} from files)"
        )
        raise UserError(f"{path}: file not found{kinds}")
    if preprocessing.reads_text and suffix not in ARRAY_SUFFIXES:
        say(
            f"warning: {text!r} is a file here and is read as one (--text reads it as text)",
            sys.stderr,
        )
        return read_texts(read_text_file(path), text, preprocessing, args)
    if suffix in IMAGE_SUFFIXES:
        if preprocessing.kind != "images":
            raise UserError(f"{path}: this run reads {preprocessing.kind}, not images")
        return [(text, read_image(path, preprocessing.spec))]
    if suffix in ARRAY_SUFFIXES:
        return read_arrays(path, preprocessing)
    raise UserError(f"{path}: expected a .png, .npy or .npz file")


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


def read_arrays(path, preprocessing):
    """.npy, or .npz with an array x (or x_test): one example or a batch of them."""
    from .data.arrays import read_npy, read_npz_arrays

    if path.suffix.lower() == ".npz":
        arrays = read_npz_arrays(path, (), ("x", "x_test"))
        if not arrays:
            raise UserError(f"{path}: expected an array named x (or x_test)")
        x = arrays.get("x", arrays.get("x_test"))
    else:
        x = read_npy(path)
    single = 1 if preprocessing.kind == "tokens" else 2
    if (
        preprocessing.kind == "sequences"
        and x.ndim in (1, 2)
        and preprocessing.spec["features"] == 1
        and x.shape[-1] != 1
    ):
        x = x[..., None]  # a univariate series without its feature axis
    if x.ndim == single:
        x = x[None]
    if x.ndim != single + 1 or not np.issubdtype(x.dtype, np.number):
        raise UserError(
            f"{path}: expected {expected_shape(preprocessing)}, got {x.dtype} {x.shape}"
        )
    if len(x) == 0:
        raise UserError(f"{path}: holds no examples")
    if not np.isfinite(x.astype(np.float64)).all():
        raise UserError(f"{path}: holds NaN or infinite values")
    check_shape(path, x, preprocessing)
    return [
        (f"{path}[{i}]", row if preprocessing.kind != "tokens" else list(row))
        for i, row in enumerate(x)
    ]


def expected_shape(preprocessing):
    spec = preprocessing.spec
    return {
        "images": f"pixels (rows, columns) = {tuple(spec.get('shape', ()))}, or a batch of them",
        "sequences": f"(steps, {spec.get('features')}) values, or a batch of them",
    }.get(preprocessing.kind, "word ids (steps,), or a batch of them")


def check_shape(path, x, preprocessing):
    spec = preprocessing.spec
    if preprocessing.kind == "images" and list(x.shape[1:]) != spec["shape"]:
        raise UserError(
            f"{path}: expected images of {tuple(spec['shape'])}, got {x.shape[1:]}"
        )
    if preprocessing.kind == "sequences" and x.shape[2] != spec["features"]:
        raise UserError(
            f"{path}: expected {spec['features']} features per step, got {x.shape[2]}"
        )
    if preprocessing.kind == "tokens" and (x.min() < 0 or x.max() >= spec["vocab_size"]):
        raise UserError(
            f"{path}: word ids must lie in 0..{spec['vocab_size'] - 1} for this run, got {x.min()}..{x.max()}"
        )


def read_texts(lines, source, preprocessing, args):
    """Non-blank lines, labelled with their line numbers in the source (or shortened)."""
    if not preprocessing.reads_text and preprocessing.kind != "tokens":
        raise UserError(
            f"this run reads {preprocessing.kind}, not texts: pass .npy files"
        )
    found = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if not found:
        raise UserError(f"{source or 'the input'}: no text to classify")
    labels = [
        f"{source}:{number}" if source else shorten(line) for number, line in found
    ]
    if preprocessing.kind == "texts":
        return [(label, line) for label, (_, line) in zip(labels, found)]
    if preprocessing.word_index is None:
        preprocessing.word_index = word_index(args)
    return [
        (label, preprocessing.encode_words(line))
        for label, (_, line) in zip(labels, found)
    ]


def shorten(text, width=40):
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def word_index(args):
    """The IMDB word index: --word-index, the run folder, or Keras' download cache."""
    from .data.official import read_word_index
    from .preprocess import WORD_INDEX_FILE

    for path in (args.word_index, args.run_dir / WORD_INDEX_FILE):
        if path is not None and path.is_file():
            return read_word_index(path)
    try:
        return load_keras(args).datasets.imdb.get_word_index()
    except Exception as error:  # offline, proxy, bad cache
        raise UserError(
            f"this run has no IMDB word index and it cannot be downloaded ({first_line(error)}); "
            f"download {WORD_INDEX_URL} and pass --word-index FILE, or pass word ids as .npy"
        ) from None


def png_size(path):
    """(width, height) from a PNG's header, before anything is decoded."""
    with open(path, "rb") as stream:
        head = stream.read(24)
    if len(head) < 24 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise UserError(f"{path}: not a PNG image")
    return struct.unpack(">II", head[16:24])


def read_image(path, spec):
    """A PNG as the run's images: grey, resized to the run's shape, pixels 0-255, with
    the training images' background (a dark digit on white is turned light on dark)."""
    import matplotlib.image

    width, height = png_size(path)
    if width * height > MAX_IMAGE_PIXELS:
        raise UserError(
            f"{path}: {width}x{height} pixels; at most {MAX_IMAGE_PIXELS:,} pixels are read"
        )
    try:
        image = np.asarray(matplotlib.image.imread(path), dtype=np.float64)
    except (OSError, ValueError, SyntaxError) as error:
        raise UserError(
            f"{path}: not a readable PNG image ({first_line(error)})"
        ) from None
    if image.ndim == 3:
        if image.shape[2] in (
            2,
            4,
        ):  # transparent pixels show the white page behind them
            alpha = image[..., -1:]
            image = image[..., :-1] * alpha + (1 - alpha)
        image = image @ ([0.299, 0.587, 0.114] if image.shape[2] == 3 else [1.0])
    image = resize(image * 255.0, spec["shape"])
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).mean()
    if (border > 127.5) != (spec["background"] == "light"):
        image = 255.0 - image
    return image.astype(np.float32)


def resize(image, shape):
    """Area-weighted resize: each new pixel averages the old pixels it covers."""
    rows, columns = (
        area_weights(n_in, n_out) for n_in, n_out in zip(image.shape, shape)
    )
    return rows @ image @ columns.T


def area_weights(n_in, n_out):
    edges_in, edges_out = np.linspace(0, 1, n_in + 1), np.linspace(0, 1, n_out + 1)
    overlap = np.minimum(edges_out[1:, None], edges_in[None, 1:]) - np.maximum(
        edges_out[:-1, None], edges_in[None, :-1]
    )
    overlap = np.clip(overlap, 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------------------
# --labels: a labelled file, evaluated
# --------------------------------------------------------------------------------------
def evaluate_file(args, preprocessing):
    """Read INPUT as the run read its --test-data, predict every example, write
    predictions.csv (input, prediction, probability or value, true) and print metrics."""
    if len(args.inputs) != 1:
        raise UserError("--labels evaluates one file (or folder) at a time")
    split, inputs = labelled_split(Path(args.inputs[0]), args.run_dir, preprocessing)
    run = trained_run(args)
    outputs = []
    for batch in batches_of(split, preprocessing):
        outputs.append(run.predict_prepared(batch).outputs)
    found = np.concatenate(outputs)
    write_predictions(args.output, inputs, found, split.y, preprocessing)
    for line in metric_lines(found, split.y, preprocessing):
        say(line)
    say(f"wrote {args.output} ({len(found)} predictions)")


def labelled_split(path, run_dir, preprocessing):
    """The file's examples (raw, as the serving model takes them) and targets in the run's
    classes, read with the arguments the run was trained with."""
    from .config import Config
    from .data.core import DataError, Split, same_targets
    from .rundir import RunDir

    saved = Config.from_json(RunDir(run_dir).saved_arguments()["arguments"]).replace(
        data=path
    )
    reads = "text" if preprocessing.kind in ("tokens", "texts") else "sequences"
    targets = targets_of_run(preprocessing)
    try:
        if saved.target is not None:
            from .data.series import read_series, windows

            series, _, target = read_series(path, saved)
            split = windows(series, target, saved.window, saved.horizon, str(path))
            return split, [f"{path}[{i}]" for i in range(len(split))]
        from .data.own import read_parts

        part = read_parts(path, saved, reads, role="evaluation")["train"]
        y = same_targets(targets, part.labels, part.where)
    except DataError as error:
        raise UserError(str(error)) from None
    names = getattr(part.x, "paths", None)
    inputs = (
        [str(n) for n in names]
        if names is not None
        else [f"{path}[{i}]" for i in range(len(y))]
    )
    return Split(part.x, y), inputs


def targets_of_run(preprocessing):
    from .data.core import Targets

    return Targets(preprocessing.spec["task"], tuple(preprocessing.class_names))


def batches_of(split, preprocessing, size=1024):
    """The serving model's input, a batch at a time (raw values; texts vectorised)."""
    from .data.core import take

    for start in range(0, len(split), size):
        rows = np.arange(start, min(start + size, len(split)))
        x = split.x.read(rows) if split.streamed else take(split.x, rows)
        if preprocessing.kind == "texts":
            yield preprocessing.vectorize(x)
        elif preprocessing.kind == "tokens":
            yield preprocessing.apply(x)
        else:
            yield np.asarray(x, np.float32)


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
        metrics = regression_metrics(np.asarray(y).reshape(len(y), -1), found, names)
        lines = [
            f"mae {metrics['mae']:.6g}  rmse {metrics['rmse']:.6g}  ({len(found)} examples)"
        ]
        if len(names) > 1:
            lines += [
                f"  {n}: mae {m['mae']:.6g}  rmse {m['rmse']:.6g}"
                for n, m in metrics["per_target"].items()
            ]
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


if __name__ == "__main__":
    main()
