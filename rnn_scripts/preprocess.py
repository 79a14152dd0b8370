"""From raw examples to the model's input, and what the model's output means: fitted on the
training rows only, applied to every split, saved with the run (preprocessing.json, plus
vocabulary.json or word_index.json for texts), and applied the same way by predict.py and
inside an exported model (input_layers). Nothing here is ever unpickled.

Standardisation is x * scale + offset (scale = 1/std, offset = -mean/std), the form of
keras.layers.Rescaling, so that training, prediction and export compute the same thing.
"""

import json
import math
import re
from pathlib import Path

import numpy as np

from .data.official import FIRST_WORD_INDEX, OOV_TOKEN, START_TOKEN
from .data.rows import TokenIds
from .errors import UserError, first_line

SPEC_FILE, VOCABULARY_FILE, WORD_INDEX_FILE = (
    "preprocessing.json",
    "vocabulary.json",
    "word_index.json",
)
PIXEL_SCALE = 255.0
STATISTICS_ROWS = 1_000_000  # time steps sampled for a feature's mean and deviation
ADAPT_BATCH = 1024
KINDS = ("images", "sequences", "tokens", "texts")
MAX_IMAGE_PIXELS = 4096 * 4096  # what predict.py decodes a PNG into, at most
OUTPUTS = ("logits", "probabilities", "values")


class Preprocessing:
    def __init__(self, spec, vocabulary=None, word_index=None):
        self.spec, self.vocabulary, self.word_index = spec, vocabulary, word_index
        self._vectorizer = None

    @property
    def kind(self):
        return self.spec["kind"]

    @property
    def is_regression(self):
        return self.spec["task"] == "regression"

    @property
    def class_names(self):
        return self.spec["class_names"]

    @property
    def reads_text(self):
        return self.kind == "texts" or bool(self.spec.get("imdb_words"))

    @classmethod
    def fit(cls, data, config):
        """Constants from the training rows only (after the validation hold-out)."""
        spec = {
            "kind": data.kind,
            "task": data.targets.task,
            "class_names": data.class_names,
        }
        vocabulary, word_index, x = None, None, data.train.x
        if data.kind == "images":
            spec.update(
                shape=list(x.shape[1:]), scale=1 / PIXEL_SCALE, background=background(x)
            )
        elif data.kind == "sequences":
            spec.update(standardisation(feature_rows(x)))
            spec.update(features=int(x.shape[2]), steps=int(x.shape[1]))
        elif data.kind == "tokens":
            vocab_size = (
                config.vocab_size if data.name == "imdb" else largest_id(data) + 1
            )
            spec.update(max_length=config.max_length, vocab_size=vocab_size)
            spec["imdb_words"] = data.name == "imdb" and not data.synthetic  # text reads
            word_index = restrict(data.word_index, vocab_size)
        else:  # texts
            vocabulary = adapt_vocabulary(data.train, config.vocab_size)
            spec.update(max_length=config.max_length, vocab_size=len(vocabulary))
        if data.targets.is_regression:
            y = data.train.y.astype(np.float64)
            std = y.std(axis=0)
            spec.update(
                target_mean=y.mean(axis=0).tolist(),
                target_std=np.where(std > 0, std, 1.0).tolist(),
            )
        if data.series:
            spec["series"] = data.series
        return cls(spec, vocabulary, word_index)

    def model_options(self):
        """What build_model may ask about the data, by parameter name (contract.py)."""
        spec = self.spec
        outputs = (
            len(spec["target_mean"]) if self.is_regression else len(self.class_names)
        )
        options = {
            "outputs": outputs,
            "classes": None if self.is_regression else len(self.class_names),
        }
        if self.kind == "images":
            options.update(features=spec["shape"][1], steps=spec["shape"][0])
        elif self.kind == "sequences":
            options.update(features=spec["features"], steps=spec["steps"])
        else:
            options.update(vocab_size=spec["vocab_size"], steps=spec["max_length"])
        return options

    # ---- applying ------------------------------------------------------------------------
    def apply(self, x):
        """Raw examples (as the data hold them) -> the model's input array."""
        if self.kind in ("images", "sequences"):
            scale, offset = self.scale_and_offset()
            return np.asarray(x, np.float32) * scale + offset
        if self.kind == "texts":
            return self.vectorize(list(x))
        return pad(x, self.spec["max_length"])

    def apply_to(self, data):
        """Every in-memory split prepared now, and texts read from disk vectorized into a
        scratch file; other streamed splits are prepared batch by batch."""
        for name in ("train", "validation", "test"):
            split = getattr(data, name)
            if not split.streamed:
                split.x = self.apply(split.x)
            elif self.kind == "texts":
                split.x = TokenIds.write(
                    split.x, self.vectorize, self.spec["max_length"]
                )
            split.y = split.y.astype(np.float32 if self.is_regression else np.int32)

    def scale_and_offset(self):
        if self.kind == "images":
            return np.float32(self.spec["scale"]), np.float32(0)
        return np.asarray(self.spec["scale"], np.float32), np.asarray(
            self.spec["offset"], np.float32
        )

    def vectorize(self, texts):
        return np.asarray(
            self.vectorizer()(np.asarray(texts, dtype=object)), dtype=np.int32
        )

    def vectorizer(self):
        """TextVectorization with the run's vocabulary (lower case, punctuation stripped,
        the first max_length words, padded at the end)."""
        if self._vectorizer is None:
            import keras

            self._vectorizer = keras.layers.TextVectorization(
                vocabulary=self.vocabulary,
                output_sequence_length=self.spec["max_length"],
            )
        return self._vectorizer

    def encode_words(self, text):
        """Raw text -> keras.datasets.imdb's word ids (needs the run's word index)."""
        words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("<br />", " ")).split()
        ids = [
            self.word_index.get(w, OOV_TOKEN - FIRST_WORD_INDEX) + FIRST_WORD_INDEX
            for w in words
        ]
        ids = [i if i < self.spec["vocab_size"] else OOV_TOKEN for i in ids]
        return [START_TOKEN] + ids

    def input_layers(self):
        """Keras layers that do what apply() does, for a model that takes raw inputs."""
        import keras

        if self.kind in ("images", "sequences"):
            scale, offset = self.scale_and_offset()
            return [
                keras.layers.Rescaling(
                    scale.tolist(), offset.tolist(), name="standardise"
                )
            ]
        return []

    def output_layer(self):
        """A layer taking the standardised regression output back to the targets' units."""
        import keras

        std, mean = self.spec["target_std"], self.spec["target_mean"]
        return keras.layers.Rescaling(std, mean, name="target_units")

    # ---- saving and loading --------------------------------------------------------------
    def save(self, run_dir):
        run_dir.write_json(SPEC_FILE, self.spec)
        if self.vocabulary is not None:
            run_dir.write_json(VOCABULARY_FILE, self.vocabulary)
        if self.word_index is not None:
            run_dir.write_json(WORD_INDEX_FILE, self.word_index)

    @classmethod
    def load(cls, folder):
        """The run's preprocessing, checked: a damaged or edited file is one line."""
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"no run folder {folder}")
        try:
            spec = json.loads((folder / SPEC_FILE).read_text())
            vocabulary = read_json_if_there(folder / VOCABULARY_FILE)
            word_index = read_json_if_there(folder / WORD_INDEX_FILE)
        except FileNotFoundError:
            raise UserError(
                f"{folder}: no {SPEC_FILE} (not a run folder, or its run never started)"
            ) from None
        except (OSError, ValueError) as error:
            raise UserError(
                f"{folder / SPEC_FILE}: not readable ({first_line(error)})"
            ) from None
        problem = spec_problem(spec, vocabulary, word_index)
        if problem:
            raise UserError(f"{folder / SPEC_FILE}: {problem} (was it edited?)")
        return cls(spec, vocabulary, word_index)


def spec_problem(spec, vocabulary, word_index):
    """What makes a preprocessing.json unusable, or None."""
    if not isinstance(spec, dict):
        return "not a JSON object"
    kind, names = spec.get("kind"), spec.get("class_names")
    if kind not in KINDS or spec.get("task") not in ("classification", "regression"):
        return "no valid 'kind' and 'task'"
    if not (
        isinstance(names, list) and names and all(isinstance(n, str) for n in names)
    ):
        return "'class_names' must be a list of names"
    if len(set(names)) != len(names):
        return "'class_names' repeat"
    if spec.get("output", "logits") not in OUTPUTS:
        return f"'output' must be one of {', '.join(OUTPUTS)}"
    if kind == "images" and not (
        sizes(spec.get("shape"), 2) and math.prod(spec["shape"]) <= MAX_IMAGE_PIXELS
    ):
        return f"'shape' must be two sizes (rows, columns), at most {MAX_IMAGE_PIXELS:,} pixels"
    if kind in ("images", "sequences") and not numbers(
        spec.get("scale"), kind == "images"
    ):
        return "'scale' must be numbers"
    if kind == "sequences" and not (
        sizes([spec.get("features")], 1) and numbers(spec.get("offset"))
    ):
        return "'features' and 'offset' must be given"
    if kind in ("tokens", "texts") and not sizes(
        [spec.get("max_length"), spec.get("vocab_size")], 2
    ):
        return "'max_length' and 'vocab_size' must be positive integers"
    if kind == "texts" and not (
        isinstance(vocabulary, list) and all(isinstance(w, str) for w in vocabulary)
    ):
        return f"the run's {VOCABULARY_FILE} must be a list of words"
    if word_index is not None and not isinstance(word_index, dict):
        return f"the run's {WORD_INDEX_FILE} must map words to ids"
    if spec["task"] == "regression" and not (
        numbers(spec.get("target_mean")) and numbers(spec.get("target_std"))
    ):
        return "'target_mean' and 'target_std' must be numbers"
    return None


def sizes(values, count, limit=10**7):
    return (
        isinstance(values, list)
        and len(values) == count
        and all(type(v) is int and 0 < v <= limit for v in values)
    )


def numbers(values, scalar=False):
    if scalar:
        values = [values]
    return (
        isinstance(values, list)
        and bool(values)
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in values
        )
    )


def read_json_if_there(path):
    return json.loads(path.read_text()) if path.is_file() else None


def feature_rows(x):
    """(time steps, features) rows for the statistics: every step of in-memory sequences, the
    covered part of a windowed series, at most STATISTICS_ROWS of them (evenly spaced)."""
    if hasattr(x, "series"):
        rows = x.series[x.starts.min() : x.starts.max() + x.window]
    else:
        rows = np.asarray(x).reshape(-1, x.shape[-1])
    step = max(1, len(rows) // STATISTICS_ROWS)
    return rows[::step].astype(np.float64)


def standardisation(rows):
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return {"scale": (1 / std).tolist(), "offset": (-mean / std).tolist()}


def pad(sequences, max_length):
    """Keep the first max_length ids and pad at the end: right padding is what the mask
    (and cuDNN) needs."""
    import keras

    return keras.utils.pad_sequences(
        sequences, maxlen=max_length, dtype="int32", padding="post", truncating="post"
    )


def background(pictures):
    """ "dark" or "light": the mean of the images' border pixels (MNIST: dark)."""
    border = np.concatenate(
        [pictures[:, 0, :], pictures[:, -1, :], pictures[:, :, 0], pictures[:, :, -1]],
        axis=1,
    )
    return "dark" if border.mean() < PIXEL_SCALE / 2 else "light"


def largest_id(data):
    return max(
        int(np.max(split.x)) if len(split) else 0 for split in (data.train, data.test)
    )


def restrict(word_index, vocab_size):
    """The words whose ids lie below vocab_size (the rest read as OOV anyway)."""
    if word_index is None:
        return None
    return {w: r for w, r in word_index.items() if r + FIRST_WORD_INDEX < vocab_size}


def adapt_vocabulary(train, vocab_size):
    """TextVectorization's vocabulary (padding, OOV, then words by frequency), adapted on the
    training texts only, read from disk a batch at a time."""
    import keras
    import tensorflow as tf

    def batches():
        for start in range(0, len(train), ADAPT_BATCH):
            yield np.asarray(
                train.x.read(np.arange(start, min(start + ADAPT_BATCH, len(train)))),
                dtype=object,
            )

    texts = tf.data.Dataset.from_generator(
        batches, output_signature=tf.TensorSpec([None], tf.string)
    )
    vectorizer = keras.layers.TextVectorization(max_tokens=vocab_size)
    vectorizer.adapt(texts)
    return [str(word) for word in vectorizer.get_vocabulary()]
