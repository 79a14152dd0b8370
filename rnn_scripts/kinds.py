"""The kinds of examples. Each class owns what differs between them: the statistics
fitted on the training rows, raw examples made into the model's input (in NumPy, and
as layers inside an exported model), build_model's data parameters, and predict.py's
raw inputs.

    Images     uint8 pixels (N, rows, columns), read row by row; PNG files to predict
    Sequences  floats (N, steps, features), standardised per feature
    Series     windows of a series (--target); a .csv of its columns to predict
    WordIds    integer word ids (N, steps), 0 = padding (IMDB's, or your own)
    Texts      strings, turned into word ids by TextVectorization

A kind's `spec` is the run's preprocessing.json. Nothing here imports Keras on import.
"""

import json
import math
import re
import struct

import numpy as np

from .data.arrays import read_npy, read_npz_arrays
from .data.rows import TokenIds
from .data.series import last_window
from .errors import InputError, UserError, first_line

PIXEL_SCALE = 255.0
MAX_IMAGE_PIXELS = 4096 * 4096  # what predict.py decodes a PNG into, at most
STATISTICS_ROWS = 1_000_000  # time steps sampled for a feature's mean and deviation
START_TOKEN, OOV_TOKEN, FIRST_WORD_INDEX = 1, 2, 3  # keras.datasets.imdb's conventions
ARRAY_SUFFIXES = (".npy", ".npz")
WORD_INDEX_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"


class Kind:
    name = reads = None
    dtype, example_dims = "float32", 2  # one example: (steps, features)
    shows_pictures = reads_text = False  # samples.png; predict.py's sentences

    def __init__(self, spec, vocabulary=None, word_index=None):
        self.spec, self.vocabulary, self.word_index = spec, vocabulary, word_index

    def problem(self):
        """What makes its part of an edited preprocessing.json unusable, or None."""

    @classmethod
    def fits_shape(cls, reference, other):
        """Whether examples like `other` go where the training data's went."""
        return reference.shape[1:] == other.shape[1:]

    def prepare(self, x):
        """Raw examples (as the data hold them) -> the model's input array."""
        return np.asarray(x, np.float32)

    def prepare_streamed(self, rows):
        return rows  # rows read from disk: prepared batch by batch (feed.py)

    def input_layers(self):
        """Keras layers that do what prepare() does, in a model that takes raw input."""
        return []

    def for_export(self, model, format_name):
        return model

    def example_shape(self):
        return [None, self.spec["features"]]

    def raw_batch(self, examples):
        """Raw examples (one, or a batch) -> the serving model's input; InputError where
        they do not fit the run."""
        try:
            x = np.asarray(examples, np.float32)
        except (ValueError, TypeError) as error:
            raise InputError(
                f"the input: expected {self.expected()} ({first_line(error)})"
            ) from None
        x = x[None] if x.ndim == self.example_dims else x
        self.check_batch(x, "the input")
        return x

    def check_batch(self, x, where):
        shape = self.example_shape()
        other = any(n not in (None, m) for n, m in zip(shape, x.shape[1:]))
        if x.ndim != len(shape) + 1 or other:
            raise InputError(
                f"{where}: expected {self.expected()}, got {x.dtype} {x.shape}"
            )

    def read_input(self, text, path, args):
        """predict.py's INPUT (a file here): [(label, raw example)]."""
        if path.suffix.lower() in ARRAY_SUFFIXES:
            return read_arrays(path, self)
        raise UserError(f"{path}: expected a .png, .npy or .npz file")


class Standardised(Kind):
    """Values scaled as x * scale + offset (keras.layers.Rescaling's form), so that
    training, prediction and export compute the same."""

    def scale_and_offset(self):
        return np.float32(self.spec["scale"]), np.float32(self.spec.get("offset", 0.0))

    def prepare(self, x):
        scale, offset = self.scale_and_offset()
        return np.asarray(x, np.float32) * scale + offset

    def input_layers(self):
        import keras

        scale, offset = (v.tolist() for v in self.scale_and_offset())
        return [keras.layers.Rescaling(scale, offset, name="standardise")]


class Images(Standardised):
    name, reads, shows_pictures = "images", "sequences", True

    @classmethod
    def fit(cls, data, options):
        x = data.train.x
        spec = {"shape": list(x.shape[1:]), "scale": 1 / PIXEL_SCALE}
        return cls({**spec, "background": background(x)})

    def problem(self):
        shape = self.spec.get("shape")
        if not (sizes(shape, 2) and math.prod(shape) <= MAX_IMAGE_PIXELS):
            most = f"at most {MAX_IMAGE_PIXELS:,} pixels"
            return f"'shape' must be two sizes (rows, columns), {most}"
        return None if numbers([self.spec.get("scale")]) else "'scale' must be numbers"

    def model_options(self):
        return {"steps": self.spec["shape"][0], "features": self.spec["shape"][1]}

    def example_shape(self):
        return list(self.spec["shape"])

    def expected(self):
        return (
            f"pixels (rows, columns) = {tuple(self.spec['shape'])}, or a batch of them"
        )

    def describe_input(self):
        return "pixels 0-255, float32, shape (N, {}, {})".format(*self.spec["shape"])

    def read_input(self, text, path, args):
        if path.suffix.lower() == ".png":
            return [(text, read_image(path, self.spec))]
        return super().read_input(text, path, args)


class Sequences(Standardised):
    name = reads = "sequences"

    @classmethod
    def fit(cls, data, options):
        x = data.train.x
        spec = standardisation(feature_rows(x))
        return cls({**spec, "features": int(x.shape[2]), "steps": int(x.shape[1])})

    @classmethod
    def fits_shape(cls, reference, other):
        return reference.shape[2:] == other.shape[2:]  # any number of steps

    def problem(self):
        spec = self.spec
        if not (numbers(spec.get("scale")) and numbers(spec.get("offset"))):
            return "'scale' and 'offset' must be numbers"
        if (
            not sizes([spec.get("features")], 1)
            or len(spec["scale"]) != spec["features"]
        ):
            return "'features' must be the number of 'scale' and 'offset' values"
        return None

    def model_options(self):
        return {"features": self.spec["features"], "steps": self.spec["steps"]}

    def expected(self):
        return f"(steps, {self.spec['features']}) values, or a batch of them"

    def describe_input(self):
        return f"unscaled values, float32, shape (N, steps, {self.spec['features']})"


class Series(Sequences):
    """Windows of a time series: `window` rows of the feature columns; the target is the
    --target column `horizon` rows after a window's last row."""

    name = "series"

    @classmethod
    def fit(cls, data, options):
        kind = super().fit(data, options)
        kind.spec["series"] = data.series
        return kind

    def problem(self):
        series = self.spec.get("series") or {}
        if not sizes([series.get("window"), series.get("horizon")], 2):
            return "'series' must give 'window' and 'horizon'"
        return super().problem()

    def example_shape(self):
        return [self.spec["series"]["window"], self.spec["features"]]

    def expected(self):
        window, features = self.spec["series"]["window"], self.spec["features"]
        return f"windows of {window} steps x {features} values, or a batch of them"

    def describe_input(self):
        series, features = self.spec["series"], self.spec["features"]
        columns, window = ", ".join(series["columns"]), series["window"]
        return (
            f"the last {window} rows of the columns {columns} (unscaled, float32, shape "
            f"(N, {window}, {features})); the output is {series['target']} "
            f"{series['horizon']} row(s) after the last"
        )

    def read_input(self, text, path, args):
        if path.suffix.lower() in (".csv", ".tsv", ".txt"):
            return [(text, last_window(path, self.spec["series"], args.delimiter))]
        return super().read_input(text, path, args)


class WordIds(Kind):
    name, reads, dtype, example_dims = "tokens", "text", "int32", 1

    @classmethod
    def fit(cls, data, options):
        imdb = data.name == "imdb"
        vocab_size = options.vocab_size if imdb else largest_id(data) + 1
        spec = {"max_length": options.max_length, "vocab_size": vocab_size}
        # raw text reads as IMDB's words
        spec["imdb_words"] = imdb and not data.synthetic
        return cls(spec, word_index=restrict(data.word_index, vocab_size))

    @classmethod
    def fits_shape(cls, reference, other):
        return True  # any number of words

    @property
    def reads_text(self):
        return bool(self.spec.get("imdb_words"))

    def problem(self):
        if not sizes([self.spec.get("max_length"), self.spec.get("vocab_size")], 2):
            return "'max_length' and 'vocab_size' must be positive integers"
        if self.word_index is not None and not isinstance(self.word_index, dict):
            return "the run's word_index.json must map words to ids"
        return None

    def model_options(self):
        return {"vocab_size": self.spec["vocab_size"], "steps": self.spec["max_length"]}

    def example_shape(self):
        return [None]

    def prepare(self, x):
        """The first max_length ids, padded at the end (what the mask and cuDNN need)."""
        import keras

        return keras.utils.pad_sequences(
            x, self.spec["max_length"], "int32", padding="post", truncating="post"
        )

    def raw_batch(self, examples):
        try:
            ids = self.prepare(
                [examples] if np.ndim(examples[0]) == 0 else list(examples)
            )
        except (ValueError, TypeError, IndexError) as error:
            raise InputError(
                f"the input: expected {self.expected()} ({first_line(error)})"
            ) from None
        self.check_batch(ids, "the word ids")
        return ids

    def check_batch(self, x, where):
        if x.ndim != 2 or x.dtype.kind not in "iuf":
            raise InputError(
                f"{where}: expected {self.expected()}, got {x.dtype} {x.shape}"
            )
        top = self.spec["vocab_size"] - 1
        if x.size and (x.min() < 0 or x.max() > top):
            found = f"{x.min()}..{x.max()}"
            raise InputError(
                f"{where}: word ids must lie in 0..{top} for this run, got {found}"
            )

    def expected(self):
        return "word ids (steps,), or a batch of them"

    def describe_input(self):
        top = self.spec["vocab_size"]
        return f"word ids, int32, shape (N, steps), 0 = padding, below {top}"

    def read_text(self, lines, args):
        """Raw text in IMDB's words (the run's word index): [word ids] per line."""
        if not self.reads_text:
            raise UserError(
                "this run reads tokens from files (word ids as .npy), not texts"
            )
        if self.word_index is None:
            self.word_index = imdb_word_index(args)
        return [self.encode_words(line) for line in lines]

    def encode_words(self, text):
        """Raw text -> keras.datasets.imdb's word ids (needs the run's word index)."""
        words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("<br />", " ")).split()
        ids = [self.word_index.get(w, -1) + FIRST_WORD_INDEX for w in words]  # -1: OOV
        return [START_TOKEN] + [
            i if i < self.spec["vocab_size"] else OOV_TOKEN for i in ids
        ]


class Texts(WordIds):
    """Strings, turned into word ids by TextVectorization with the run's vocabulary
    (lower case, punctuation stripped, the first max_length words, padded at the end)."""

    name, reads_text, _vectorizer = "texts", True, None

    @classmethod
    def fit(cls, data, options):
        vocabulary = adapt_vocabulary(data.train, options.vocab_size)
        spec = {"max_length": options.max_length, "vocab_size": len(vocabulary)}
        return cls(spec, vocabulary=vocabulary)

    def problem(self):
        words = self.vocabulary
        if not (isinstance(words, list) and all(isinstance(w, str) for w in words)):
            return "the run's vocabulary.json must be a list of words"
        return super().problem()

    def vectorizer(self):
        if self._vectorizer is None:
            import keras

            length = self.spec["max_length"]
            self._vectorizer = keras.layers.TextVectorization(
                vocabulary=self.vocabulary, output_sequence_length=length
            )
        return self._vectorizer

    def prepare(self, texts):
        texts = np.asarray(list(texts), dtype=object)
        return np.asarray(self.vectorizer()(texts), np.int32)

    def prepare_streamed(self, rows):
        """Texts on disk, vectorized once into a scratch file of word ids
        (rows.TokenIds): each epoch then reads ids, not texts."""
        return TokenIds.write(rows, self.prepare, self.spec["max_length"])

    def raw_batch(self, examples):
        texts = [examples] if isinstance(examples, str) else list(examples)
        if not all(isinstance(text, str) for text in texts):
            raise InputError(
                "the input: expected texts (a string, or a list of strings)"
            )
        return self.prepare(texts)

    def read_text(self, lines, args):
        return list(lines)

    def describe_input(self):
        return (
            "SavedModel: strings, shape (N,); ONNX: word ids from vocabulary.json "
            "(TextVectorization: lower case, no punctuation, first "
            f"{self.spec['max_length']} words, 0-padded)"
        )

    def for_export(self, model, format_name):
        """SavedModel takes strings (TextVectorization inside); ONNX has no string
        operations, so its model takes word ids."""
        if format_name != "saved_model":
            return model
        import keras

        texts = keras.Input(shape=(), dtype="string", name="text")
        return keras.Model(texts, model(self.vectorizer()(texts)), name=model.name)


KINDS = {kind.name: kind for kind in (Images, Sequences, Series, WordIds, Texts)}


def of(spec, vocabulary=None, word_index=None):
    """The kind a preprocessing.json names (an older run's series: "sequences" +
    "series")."""
    name = spec.get("kind")
    name = "series" if name == "sequences" and "series" in spec else name
    return KINDS[name](spec, vocabulary, word_index) if name in KINDS else None


# --------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------
def background(x):
    """ "dark" or "light": the mean of the images' border pixels (MNIST: dark)."""
    border = np.concatenate([x[:, 0, :], x[:, -1, :], x[:, :, 0], x[:, :, -1]], axis=1)
    return "dark" if border.mean() < PIXEL_SCALE / 2 else "light"


def feature_rows(x):
    """(time steps, features) rows for the statistics: every step of in-memory sequences,
    the covered part of a windowed series; at most STATISTICS_ROWS, evenly spaced."""
    if hasattr(x, "series"):
        rows = x.series[x.starts.min() : x.starts.max() + x.window]
    else:
        rows = np.asarray(x).reshape(-1, x.shape[-1])
    return rows[:: max(1, len(rows) // STATISTICS_ROWS)].astype(np.float64)


def standardisation(rows):
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return {"scale": (1 / std).tolist(), "offset": (-mean / std).tolist()}


def largest_id(data):
    return max(int(np.max(s.x)) if len(s) else 0 for s in (data.train, data.test))


def restrict(word_index, vocab_size):
    """The words whose ids lie below vocab_size (the rest read as OOV anyway)."""
    if word_index is not None:
        return {w: r for w, r in word_index.items() if r + FIRST_WORD_INDEX < vocab_size}


def adapt_vocabulary(train, vocab_size, batch=1024):
    """TextVectorization's vocabulary (padding, OOV, then words by frequency), adapted on
    the training texts only, read from disk a batch at a time."""
    import keras
    import tensorflow as tf

    def batches():
        for start in range(0, len(train), batch):
            rows = np.arange(start, min(start + batch, len(train)))
            yield np.asarray(train.x.read(rows), dtype=object)

    spec = tf.TensorSpec([None], tf.string)
    vectorizer = keras.layers.TextVectorization(max_tokens=vocab_size)
    vectorizer.adapt(tf.data.Dataset.from_generator(batches, output_signature=spec))
    return [str(word) for word in vectorizer.get_vocabulary()]


def sizes(values, count, limit=10**7):
    ok = isinstance(values, list) and len(values) == count
    return ok and all(type(v) is int and 0 < v <= limit for v in values)


def numbers(values):
    def number(v):
        return (
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        )

    return isinstance(values, list) and bool(values) and all(map(number, values))


# --------------------------------------------------------------------------------------
# Raw inputs predict.py reads, checked before Keras loads
# --------------------------------------------------------------------------------------
def read_arrays(path, kind):
    """.npy, or .npz with an array x (or x_test): one example or a batch of them."""
    if path.suffix.lower() == ".npz":
        arrays = read_npz_arrays(path, (), ("x", "x_test"))
        if not arrays:
            raise UserError(f"{path}: expected an array named x (or x_test)")
        x = arrays.get("x", arrays.get("x_test"))
    else:
        x = read_npy(path)
    one_feature = isinstance(kind, Sequences) and kind.spec["features"] == 1
    if one_feature and x.ndim in (1, 2) and x.shape[-1] != 1:
        x = x[..., None]  # a univariate series without its feature axis
    x = x[None] if x.ndim == kind.example_dims else x
    if not np.issubdtype(x.dtype, np.number) or x.ndim != kind.example_dims + 1:
        raise InputError(f"{path}: expected {kind.expected()}, got {x.dtype} {x.shape}")
    if len(x) == 0:
        raise InputError(f"{path}: holds no examples")
    if 0 in x.shape:
        raise InputError(f"{path}: examples of shape {x.shape[1:]} hold no values")
    if not np.isfinite(x.astype(np.float64)).all():
        raise InputError(f"{path}: holds NaN or infinite values")
    if np.abs(x).max() > np.finfo(np.float32).max / 2:
        raise InputError(f"{path}: holds values beyond float32 ({np.abs(x).max():.3g})")
    kind.check_batch(x, path)
    rows = [list(row) if kind.dtype == "int32" else row for row in x]
    return [(f"{path}[{i}]", row) for i, row in enumerate(rows)]


def read_image(path, spec):
    """A PNG as the run's images: grey, resized to the run's shape, pixels 0-255, with
    the training images' background (a dark digit on white is turned light on dark)."""
    import matplotlib.image

    with open(path, "rb") as stream:  # the size, from the header, before decoding
        head = stream.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise UserError(f"{path}: not a PNG image")
    width, height = struct.unpack(">II", head[16:24])
    if width * height > MAX_IMAGE_PIXELS:
        limit = f"at most {MAX_IMAGE_PIXELS:,} pixels are read"
        raise UserError(f"{path}: {width}x{height} pixels; {limit}")
    try:
        image = np.asarray(matplotlib.image.imread(path), dtype=np.float64)
    except (OSError, ValueError, SyntaxError) as error:
        raise UserError(
            f"{path}: not a readable PNG image ({first_line(error)})"
        ) from None
    if image.ndim == 3:
        if image.shape[2] in (2, 4):  # transparent pixels show the white page behind
            alpha = image[..., -1:]
            image = image[..., :-1] * alpha + (1 - alpha)
        image = image @ ([0.299, 0.587, 0.114] if image.shape[2] == 3 else [1.0])
    rows, columns = (area_weights(a, b) for a, b in zip(image.shape, spec["shape"]))
    image = rows @ (image * 255.0) @ columns.T
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).mean()
    if (border > 127.5) != (spec["background"] == "light"):
        image = 255.0 - image
    return image.astype(np.float32)


def area_weights(n_in, n_out):
    """A resize's weights: each new pixel averages the old pixels it covers."""
    edges_in, edges_out = np.linspace(0, 1, n_in + 1), np.linspace(0, 1, n_out + 1)
    start = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    overlap = np.clip(
        np.minimum(edges_out[1:, None], edges_in[None, 1:]) - start, 0, None
    )
    return overlap / overlap.sum(axis=1, keepdims=True)


def read_word_index(path):
    """keras.datasets.imdb's word index ({word: rank}), or None if not at hand."""
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text())
        if isinstance(index, dict) and all(
            type(v) is int and v >= 0 for v in index.values()
        ):
            return index
    except (ValueError, OSError, UnicodeDecodeError):
        pass
    raise UserError(f"{path}: not a word index (a JSON object of word: rank)")


def imdb_word_index(args):
    """The IMDB word index: --word-index, the run folder, or Keras' download cache."""
    for path in (args.word_index, args.run_dir / "word_index.json"):
        if path is not None and path.is_file():
            return read_word_index(path)
    try:
        from .environment import quiet_keras

        return quiet_keras(args.backend, args.verbose).datasets.imdb.get_word_index()
    except Exception as error:  # offline, proxy, bad cache
        raise UserError(
            "this run has no IMDB word index and it cannot be downloaded "
            f"({first_line(error)}); download {WORD_INDEX_URL}imdb_word_index.json and "
            "pass --word-index FILE, or pass word ids as .npy"
        ) from None
