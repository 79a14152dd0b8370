"""From raw examples to the model's input: fitted on the training rows, applied to every split,
saved with the run (preprocessing.json, plus vocabulary.json or word_index.json for texts) and
applied the same way by predict.py. Nothing here is ever unpickled.
"""

import json
import re

import numpy as np

from .data import FIRST_WORD_INDEX, OOV_TOKEN, START_TOKEN
from .errors import UserError, first_line

SPEC_FILE, VOCABULARY_FILE, WORD_INDEX_FILE = (
    "preprocessing.json",
    "vocabulary.json",
    "word_index.json",
)
PIXEL_SCALE = 255.0


class Preprocessing:
    def __init__(self, spec, vocabulary=None, word_index=None):
        self.spec, self.vocabulary, self.word_index = spec, vocabulary, word_index
        self._vectorizer = None

    @property
    def kind(self):
        return self.spec["kind"]

    @property
    def class_names(self):
        return self.spec["class_names"]

    @classmethod
    def fit(cls, data, max_length=None, vocab_size=None):
        """Constants from the training rows only (data.x_train after the validation hold-out)."""
        spec = {"kind": data.kind, "class_names": data.class_names}
        vocabulary, word_index = None, None
        if data.kind == "images":
            spec.update(shape=list(data.x_train.shape[1:]), scale=PIXEL_SCALE)
            spec["background"] = background(data.x_train)
        elif data.kind == "sequences":
            mean, std = data.x_train.mean(axis=(0, 1)), data.x_train.std(axis=(0, 1))
            spec.update(features=int(data.x_train.shape[2]), mean=mean.tolist())
            spec["std"] = np.where(std > 0, std, 1.0).tolist()
        elif data.kind == "tokens":
            spec.update(max_length=max_length, vocab_size=vocab_size or largest_id(data) + 1)
            spec["imdb_words"] = data.name == "imdb" and not data.synthetic  # text reads
            word_index = restrict(data.word_index, spec["vocab_size"])
        else:  # texts
            vocabulary = adapt_vocabulary(data.x_train, vocab_size)
            spec.update(max_length=max_length, vocab_size=len(vocabulary))
        return cls(spec, vocabulary, word_index)

    def model_options(self):
        """What build_model may ask about the data, by parameter name."""
        options = {"classes": len(self.class_names)}
        if self.kind == "images":
            options["features"] = self.spec["shape"][1]
        elif self.kind == "sequences":
            options["features"] = self.spec["features"]
        else:
            options["vocab_size"] = self.spec["vocab_size"]
        return options

    # ---- applying ------------------------------------------------------------------------
    def apply(self, x):
        """Raw examples (as the data hold them) -> the model's input array."""
        if self.kind == "images":
            return np.asarray(x, dtype=np.float32) / np.float32(self.spec["scale"])
        if self.kind == "sequences":
            mean = np.asarray(self.spec["mean"], np.float32)
            return ((np.asarray(x, np.float32) - mean) / np.asarray(self.spec["std"], np.float32))
        if self.kind == "texts":
            return self.vectorize(list(x))
        return pad(x, self.spec["max_length"])

    def apply_to(self, data):
        for split_name in ("train", "val", "test"):
            setattr(data, "x_" + split_name, self.apply(getattr(data, "x_" + split_name)))
            labels = getattr(data, "y_" + split_name)
            setattr(data, "y_" + split_name, np.asarray(labels, dtype=np.int32))
        self.check_ids(data)

    def check_ids(self, data):
        if self.kind != "tokens":
            return
        vocab_size = self.spec["vocab_size"]
        for split_name in ("train", "val", "test"):
            x = getattr(data, "x_" + split_name)
            if len(x) and x.max() >= vocab_size:
                raise UserError(f"{data.source}: {split_name} word ids must lie in 0..{vocab_size - 1}")

    def vectorize(self, texts):
        if self._vectorizer is None:
            import keras

            self._vectorizer = keras.layers.TextVectorization(
                vocabulary=self.vocabulary,
                output_sequence_length=self.spec["max_length"],
            )
        return np.asarray(self._vectorizer(np.asarray(texts, dtype=object)), dtype=np.int32)

    def encode_words(self, text):
        """Raw text -> keras.datasets.imdb's word ids (needs the run's word index)."""
        words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("<br />", " ")).split()
        ids = [self.word_index.get(w, OOV_TOKEN - FIRST_WORD_INDEX) + FIRST_WORD_INDEX for w in words]
        return [START_TOKEN] + ids

    # ---- saving and loading --------------------------------------------------------------
    def save(self, run_dir):
        run_dir.write_json(SPEC_FILE, self.spec)
        if self.vocabulary is not None:
            run_dir.write_json(VOCABULARY_FILE, self.vocabulary)
        if self.word_index is not None:
            run_dir.write_json(WORD_INDEX_FILE, self.word_index)

    @classmethod
    def load(cls, folder):
        try:
            spec = json.loads((folder / SPEC_FILE).read_text())
            vocabulary = read_json_if_there(folder / VOCABULARY_FILE)
            word_index = read_json_if_there(folder / WORD_INDEX_FILE)
            return cls(spec, vocabulary, word_index)
        except (OSError, ValueError) as error:
            raise UserError(f"{folder}: no readable {SPEC_FILE} ({first_line(error)})")


def read_json_if_there(path):
    return json.loads(path.read_text()) if path.is_file() else None


def pad(sequences, max_length):
    """Keep the first max_length ids and pad at the end: right padding is what the mask
    (and cuDNN) needs."""
    import keras

    return keras.utils.pad_sequences(
        sequences, maxlen=max_length, dtype="int32", padding="post", truncating="post"
    )


def background(images):
    """"dark" or "light": the mean of the images' border pixels (MNIST: dark)."""
    border = np.concatenate(
        [images[:, 0, :], images[:, -1, :], images[:, :, 0], images[:, :, -1]], axis=1
    )
    return "dark" if border.mean() < PIXEL_SCALE / 2 else "light"


def largest_id(data):
    return max(int(np.max(x)) if len(x) else 0 for x in (data.x_train, data.x_test))


def restrict(word_index, vocab_size):
    """The words whose ids lie below vocab_size (the rest read as OOV anyway)."""
    if word_index is None:
        return None
    return {w: r for w, r in word_index.items() if r + FIRST_WORD_INDEX < vocab_size}


def adapt_vocabulary(texts, vocab_size):
    """TextVectorization's vocabulary (padding, OOV, then words by frequency), adapted on the
    training texts only."""
    import keras

    vectorizer = keras.layers.TextVectorization(max_tokens=vocab_size)
    vectorizer.adapt(np.asarray(texts, dtype=object))
    return [str(word) for word in vectorizer.get_vocabulary()]
