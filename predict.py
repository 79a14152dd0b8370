"""Classify new examples with a finished run: images, arrays or texts.

python predict.py RUN digit.png other.png       # image runs (MNIST, your uint8 images)
python predict.py RUN examples.npy              # arrays shaped like the run's x_train rows
python predict.py RUN "a wonderful film" -      # text runs: sentences, text files, - = stdin
python predict.py RUN examples.npz --json       # one JSON object per example

RUN is a run folder (runs/SCRIPT-TIME); its preprocessing.json says how a raw input becomes
the model's input, the same way as in training.
"""

import sys

from rnn_scripts import environment

environment.prepare(sys.argv[1:])

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from rnn_scripts.cli import BACKENDS, OneLineParser  # noqa: E402
from rnn_scripts.data import read_npz_arrays, read_word_index  # noqa: E402
from rnn_scripts.errors import EXIT_FAILED, UserError, fail, first_line  # noqa: E402
from rnn_scripts.preprocess import Preprocessing, WORD_INDEX_FILE  # noqa: E402

IMAGE_SUFFIXES, ARRAY_SUFFIXES = (".png",), (".npy", ".npz")
WORD_INDEX_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb_word_index.json"


def parse_arguments(argv):
    parser = OneLineParser(
        prog="predict.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN", help="a finished run's folder")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files, texts or -")
    parser.add_argument("--model", choices=("final", "best"), default="final",
                        help="model.keras (final) or best.keras (best validation epoch)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument("--word-index", type=Path, help="IMDB runs: imdb_word_index.json")
    parser.add_argument("--backend", choices=BACKENDS, help="Keras backend")
    parser.add_argument("--verbose", action="store_true", help="show the backend's log")
    return parser.parse_args(argv)


def main(argv):
    args = parse_arguments(argv)
    preprocessing = Preprocessing.load(args.run_dir)
    model = load_model(args.run_dir / ("model.keras" if args.model == "final" else "best.keras"))
    examples = [e for text in args.inputs for e in read_input(text, preprocessing, args)]
    names = preprocessing.class_names
    for (label, _), probabilities in zip(examples, predict(model, [x for _, x in examples])):
        best = int(np.argmax(probabilities))
        if args.json:
            row = {"input": label, "class": names[best], "class_id": best,
                   "probability": float(probabilities[best]),
                   "probabilities": dict(zip(names, map(float, probabilities)))}  # fmt: skip
            print(json.dumps(row))
        else:
            print(f"{label}: {names[best]} ({probabilities[best]:.3f})")


def load_model(path):
    if not path.is_file():
        raise UserError(f"{path}: not found (has the run finished? --model best reads best.keras)")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, OSError, zip and h5 errors
        raise UserError(f"{path}: cannot load this .keras file ({first_line(error)})")


def predict(model, inputs):
    """Class probabilities for each input; inputs of one shape go through together."""
    found = [None] * len(inputs)
    shapes = {}
    for i, x in enumerate(inputs):
        shapes.setdefault(x.shape, []).append(i)
    for rows in shapes.values():
        logits = np.asarray(model.predict(np.stack([inputs[i] for i in rows]), verbose=0))
        for i, row in zip(rows, probabilities_of(logits)):
            found[i] = row
    return found


def probabilities_of(logits):
    if logits.shape[1] == 1:  # one logit: the probability of the second class
        p = 1 / (1 + np.exp(-logits[:, 0]))
        return np.stack([1 - p, p], axis=1)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------------------
# Inputs: (label, model input) pairs
# --------------------------------------------------------------------------------------
def read_input(text, preprocessing, args):
    path, suffix = Path(text), Path(text).suffix.lower()
    reads_text = preprocessing.kind == "texts" or preprocessing.spec.get("imdb_words")
    if text == "-":
        return read_texts(sys.stdin.read().splitlines(), "stdin", preprocessing, args)
    if suffix in IMAGE_SUFFIXES + ARRAY_SUFFIXES or not reads_text:
        if not path.is_file():
            kinds = "" if reads_text else f" (this run reads {preprocessing.kind} from files)"
            raise UserError(f"{path}: file not found{kinds}")
        if suffix not in IMAGE_SUFFIXES + ARRAY_SUFFIXES:
            raise UserError(f"{path}: expected a .png, .npy or .npz file")
        if suffix in IMAGE_SUFFIXES:
            if preprocessing.kind != "images":
                raise UserError(f"{path}: this run reads {preprocessing.kind}, not images")
            return [(text, preprocessing.apply(read_image(path, preprocessing.spec)[None])[0])]
        return read_arrays(path, preprocessing)
    if path.is_file():
        return read_texts(path.read_text(encoding="utf-8").splitlines(), text, preprocessing, args)
    return read_texts([text], None, preprocessing, args)


def read_arrays(path, preprocessing):
    """.npy, or .npz with an array x (or x_test): one example or a batch of them."""
    if path.suffix.lower() == ".npz":
        arrays = read_npz_arrays(path, (), ("x", "x_test"))
        if not arrays:
            raise UserError(f"{path}: expected an array named x (or x_test)")
        x = arrays.get("x", arrays.get("x_test"))
    else:
        try:
            x = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise UserError(f"{path}: not a readable .npy of plain numbers ({first_line(error)})")
    single = 1 if preprocessing.kind == "tokens" else 2
    if x.ndim == single:
        x = x[None]
    if x.ndim != single + 1 or not np.issubdtype(x.dtype, np.number):
        raise UserError(f"{path}: expected {expected_shape(preprocessing)}, got {x.dtype} {x.shape}")
    check_shape(path, x, preprocessing)
    prepared = preprocessing.apply(x)
    return [(f"{path}[{i}]", row) for i, row in enumerate(prepared)]


def expected_shape(preprocessing):
    spec = preprocessing.spec
    return {
        "images": f"pixels (rows, columns) = {tuple(spec.get('shape', ()))}, or a batch of them",
        "sequences": f"(steps, {spec.get('features')}) values, or a batch of them",
    }.get(preprocessing.kind, "word ids (steps,), or a batch of them")


def check_shape(path, x, preprocessing):
    spec = preprocessing.spec
    if preprocessing.kind == "images" and list(x.shape[1:]) != spec["shape"]:
        raise UserError(f"{path}: expected images of {tuple(spec['shape'])}, got {x.shape[1:]}")
    if preprocessing.kind == "sequences" and x.shape[2] != spec["features"]:
        raise UserError(f"{path}: expected {spec['features']} features per step, got {x.shape[2]}")


def read_texts(lines, source, preprocessing, args):
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise UserError(f"{source or 'the input'}: no text to classify")
    labels = [f"{source}:{i + 1}" if source else shorten(line) for i, line in enumerate(lines)]
    if preprocessing.kind == "texts":
        return list(zip(labels, preprocessing.vectorize(lines)))
    if preprocessing.kind != "tokens":
        raise UserError(f"this run reads {preprocessing.kind}, not texts: pass .npy files")
    if preprocessing.word_index is None:
        preprocessing.word_index = word_index(args)
    ids = preprocessing.apply([preprocessing.encode_words(line) for line in lines])
    return list(zip(labels, ids))


def shorten(text, width=40):
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def word_index(args):
    """The IMDB word index: --word-index, the run folder, or Keras' download cache."""
    for path in (args.word_index, args.run_dir / WORD_INDEX_FILE):
        if path is not None and path.is_file():
            return read_word_index(path)
    try:
        return keras.datasets.imdb.get_word_index()
    except Exception as error:  # offline, proxy, bad cache
        raise UserError(
            f"this run has no IMDB word index and it cannot be downloaded ({first_line(error)}); "
            f"download {WORD_INDEX_URL} and pass --word-index FILE, or pass word ids as .npy"
        )


def read_image(path, spec):
    """A PNG as the run's images: grey, resized to the run's shape, pixels 0-255, with
    the training images' background (a dark digit on white is turned light on dark)."""
    import matplotlib.image

    try:
        image = np.asarray(matplotlib.image.imread(path), dtype=np.float64)
    except (OSError, ValueError, SyntaxError) as error:
        raise UserError(f"{path}: not a readable PNG image ({first_line(error)})")
    if image.ndim == 3:
        if image.shape[2] == 4:  # transparent pixels show the white page behind them
            image = image[..., :3] * image[..., 3:] + (1 - image[..., 3:])
        image = image[..., :3] @ [0.299, 0.587, 0.114]
    image = resize(image * 255.0, spec["shape"])
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).mean()
    if (border > 127.5) != (spec["background"] == "light"):
        image = 255.0 - image
    return image


def resize(image, shape):
    """Area-weighted resize: each new pixel averages the old pixels it covers."""
    rows, columns = (area_weights(n_in, n_out) for n_in, n_out in zip(image.shape, shape))
    return rows @ image @ columns.T


def area_weights(n_in, n_out):
    edges_in, edges_out = np.linspace(0, 1, n_in + 1), np.linspace(0, 1, n_out + 1)
    overlap = np.minimum(edges_out[1:, None], edges_in[None, 1:]) - np.maximum(
        edges_out[:-1, None], edges_in[None, :-1]
    )
    overlap = np.clip(overlap, 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except UserError as error:
        fail(f"error: {error}", EXIT_FAILED)
    except BrokenPipeError:  # e.g. | head: the reader has what it wanted
        sys.stderr.close()
