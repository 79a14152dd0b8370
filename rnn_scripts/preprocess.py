"""From raw examples to the model's input, and what the model's output means: the kind of
examples with its statistics (kinds.py) and the targets (class names, or values with
their mean and spread), fitted on the training rows only, saved with the run
(preprocessing.json, plus vocabulary.json or word_index.json) and read back, checked,
by predict.py, the served model and a resumed run. Nothing here is ever unpickled.
"""

import json
from pathlib import Path

import numpy as np

from . import kinds
from .errors import UserError, first_line

SPEC_FILE, VOCABULARY_FILE, WORD_INDEX_FILE = (
    "preprocessing.json",
    "vocabulary.json",
    "word_index.json",
)
OUTPUTS = ("logits", "probabilities", "values")


class Preprocessing:
    def __init__(self, spec, kind=None):
        self.spec = spec  # the kind reads its own entries of it
        self.kind = kind or kinds.of(spec)

    @property
    def is_regression(self):
        return self.spec["task"] == "regression"

    @property
    def class_names(self):
        return self.spec["class_names"]

    @property
    def output(self):
        return self.spec.get("output", "logits")

    @classmethod
    def fit(cls, data, options):
        """Constants from the training rows only (after the validation hold-out).
        `options`: vocab_size and max_length (texts and word ids)."""
        kind = data.kind.fit(data, options)
        spec = {
            "kind": kind.name,
            "task": data.targets.task,
            "class_names": data.class_names,
        }
        if data.targets.is_regression:
            y = data.train.y.astype(np.float64)
            std = y.std(axis=0)
            spec["target_mean"] = y.mean(axis=0).tolist()
            spec["target_std"] = np.where(std > 0, std, 1.0).tolist()
        kind.spec = {**spec, **kind.spec}
        return cls(kind.spec, kind)

    def model_options(self):
        """What build_model may ask about the data, by parameter name (contract.py)."""
        names = self.class_names
        outputs = len(self.spec["target_mean"]) if self.is_regression else len(names)
        classes = None if self.is_regression else len(names)
        return {"outputs": outputs, "classes": classes, **self.kind.model_options()}

    def apply(self, x):
        return self.kind.prepare(x)

    def apply_to(self, data):
        """Every split held in memory prepared now; rows read from disk are prepared
        batch by batch (texts on disk are turned into word ids once, before training)."""
        for name in ("train", "validation", "test"):
            split = getattr(data, name)
            if split.streamed:
                split.x = self.kind.prepare_streamed(split.x)
            else:
                split.x = self.kind.prepare(split.x)
            split.y = split.y.astype(np.float32 if self.is_regression else np.int32)

    def output_layer(self):
        """A layer taking the standardised output back to the targets' units."""
        import keras

        std, mean = self.spec["target_std"], self.spec["target_mean"]
        return keras.layers.Rescaling(std, mean, name="target_units")

    # ---- saving and loading ----------------------------------------------------------
    def save(self, run_dir):
        run_dir.write_json(SPEC_FILE, self.spec)
        if self.kind.vocabulary is not None:
            run_dir.write_json(VOCABULARY_FILE, self.kind.vocabulary)
        if self.kind.word_index is not None:
            run_dir.write_json(WORD_INDEX_FILE, self.kind.word_index)

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
        kind = kinds.of(spec, vocabulary, word_index) if isinstance(spec, dict) else None
        problem = spec_problem(spec, kind)
        if problem:
            raise UserError(f"{folder / SPEC_FILE}: {problem} (was it edited?)")
        return cls(spec, kind)


def spec_problem(spec, kind):
    """What makes a preprocessing.json unusable, or None."""
    if not isinstance(spec, dict):
        return "not a JSON object"
    names = spec.get("class_names")
    if kind is None or spec.get("task") not in ("classification", "regression"):
        return "no valid 'kind' and 'task'"
    if not (
        isinstance(names, list) and names and all(isinstance(n, str) for n in names)
    ):
        return "'class_names' must be a list of names"
    if len(set(names)) != len(names):
        return "'class_names' repeat"
    if spec.get("output", "logits") not in OUTPUTS:
        return f"'output' must be one of {', '.join(OUTPUTS)}"
    if spec["task"] == "regression":
        mean, std = spec.get("target_mean"), spec.get("target_std")
        if not (
            kinds.numbers(mean)
            and kinds.numbers(std)
            and len(mean) == len(std) == len(names)
        ):
            return "'target_mean' and 'target_std' must be a number per target"
    return kind.problem()


def read_json_if_there(path):
    return json.loads(path.read_text()) if path.is_file() else None
