"""A finished run in use: its model and preprocessing as one model that takes raw inputs
and returns what a user wants (class probabilities, or values). predict.py, export.py
and the README's Python snippet go through it, so all three give the same numbers:

    from rnn_scripts.serving import TrainedRun

    run = TrainedRun("runs/my-model")              # or TrainedRun(path, model="best")
    found = run.predict(np.load("new.npy"))        # one example or a batch, raw values
    print(found.labels, found.probabilities)       # a regression: found.values

Raw inputs are what the data held: pixels 0-255, unscaled features, word ids, texts, or a
series' last window. An input that does not fit the run (another shape, word ids beyond
the vocabulary, values that overflow the model) raises InputError, a ValueError whose
message is one line.
"""

from pathlib import Path

import keras
import numpy as np

from .errors import InputError, UserError, first_line
from .preprocess import Preprocessing
from .training import output_of

PREDICT_BATCH = 1024


class Predictions:
    """What a run predicts for a batch: class names and probabilities, or values."""

    def __init__(self, outputs, preprocessing):
        self.outputs = np.asarray(outputs, np.float64)
        self.names = preprocessing.class_names
        self.is_regression = preprocessing.is_regression

    def __len__(self):
        return len(self.outputs)

    @property
    def values(self):
        """A regression's predicted values, one row per example."""
        return self.outputs if self.is_regression else None

    @property
    def probabilities(self):
        """Each class's probability, one row per example (columns: class_names)."""
        return None if self.is_regression else self.outputs

    @property
    def class_ids(self):
        return None if self.is_regression else self.outputs.argmax(axis=1)

    @property
    def labels(self):
        """The predicted class names (a regression: the values)."""
        if self.is_regression:
            return self.outputs
        return [self.names[i] for i in self.class_ids]


class TrainedRun:
    def __init__(self, folder, model="final"):
        self.folder = Path(folder)
        self.preprocessing = Preprocessing.load(self.folder)
        self.kind = self.preprocessing.kind
        self.model = load_model(
            self.folder / ("best.keras" if model == "best" else "model.keras")
        )
        self._serving = None
        check_fits(self.model, self.preprocessing, self.folder)

    def serving_model(self):
        """Raw inputs -> probabilities (or values): the preprocessing as layers, the
        trained model, then softmax or sigmoid where the model gives logits. Text runs
        take word ids: TextVectorization runs before it (export.py adds it for
        SavedModel)."""
        if self._serving is None:
            self._serving = serving_model(self.model, self.preprocessing)
        return self._serving

    def prepare(self, examples):
        """Raw examples (one, or a batch) -> the serving model's input batch; InputError
        where they do not fit the run."""
        return self.kind.raw_batch(examples)

    def predict(self, examples):
        return self.predict_prepared(self.prepare(examples))

    def predict_prepared(self, batch):
        found = self.serving_model().predict(batch, verbose=0, batch_size=PREDICT_BATCH)
        bad = ~np.isfinite(found).all(axis=1)
        if bad.any():
            raise InputError(
                f"the model's output is not finite for {bad.sum()} of {len(found)} "
                f"example(s) (the first: number {np.argmax(bad) + 1}); their values "
                "lie far outside the training data's"
            )
        return Predictions(found, self.preprocessing)


def check_fits(model, preprocessing, folder):
    """The run's files must agree with each other: an edited or mismatched
    preprocessing.json would otherwise label predictions wrongly."""
    width, names = model.outputs[0].shape[-1], preprocessing.class_names
    fits = len(names) == width or (
        width == 1 and len(names) == 2 and not preprocessing.is_regression
    )
    if not fits:
        raise UserError(
            f"{folder}: preprocessing.json names {len(names)} classes or targets, the "
            f"model has {width} outputs (was it edited, or copied from another run?)"
        )
    expected = preprocessing.kind.example_shape()
    found = list(model.inputs[0].shape[1:])
    if any(e is not None and f is not None and e != f for e, f in zip(expected, found)):
        raise UserError(
            f"{folder}: preprocessing.json describes examples of shape "
            f"{tuple(expected)}, the model takes {tuple(found)} (was it edited, or "
            "copied from another run?)"
        )
    if not preprocessing.is_regression:
        output = output_of(model, 2 if width == 1 else width, regression=False)
        if output != preprocessing.output:
            raise UserError(
                f"{folder}: preprocessing.json says the model gives "
                f"{preprocessing.output}, the model gives {output} (was it edited, or "
                "copied from another run?)"
            )


def load_model(path):
    if not path.is_file():
        raise UserError(
            f"{path}: not found (has the run finished? --model best reads best.keras)"
        )
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, OSError, zip and h5 errors
        raise UserError(
            f"{path}: cannot load this .keras file ({first_line(error)})"
        ) from None


def serving_model(model, preprocessing):
    spec = model.inputs[0]
    raw = keras.Input(shape=spec.shape[1:], dtype=spec.dtype, name="raw_input")
    x = raw
    for layer in preprocessing.kind.input_layers():
        x = layer(x)
    y = model(x)
    if not preprocessing.is_regression:
        y = class_probabilities(y, preprocessing.output)
    return keras.Model(raw, y, name=f"{model.name}_serving")


def class_probabilities(y, output):
    """(N, classes) probabilities from logits or probabilities; 1 unit -> 2 columns."""
    layers = keras.layers
    if output == "logits" and y.shape[-1] > 1:
        y = layers.Softmax(name="probabilities")(y)
    elif output == "logits":
        y = layers.Activation("sigmoid")(y)
    if y.shape[-1] == 1:
        # 1-p, p
        y = layers.Concatenate(name="probabilities")([layers.Rescaling(-1.0, 1.0)(y), y])
    return y
