"""Model, compile, and the epoch loop's bookkeeping: history, best model, early stopping and
the saved state that makes a resumed run equal an uninterrupted one."""

import hashlib
import json
import math
import sys
import time

import keras
import numpy as np

from . import feed
from .errors import EXIT_FAILED, TrainingStopped, UserError, first_line
from .rundir import DamagedState, read_state

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": keras.optimizers.SGD,
}
PLATEAU = {"factor": 0.5, "patience": 2, "min_lr": 1e-6}  # --lr-schedule plateau
PLATEAU_STATE = ("wait", "best", "cooldown_counter")  # what ReduceLROnPlateau counts
LOGGED_EPOCHS = "logs/epochs-logged"


# --------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------
def build(build_model, options, preprocessing):
    """build_model(**options), checked against the data; for a regression, followed by a
    layer that takes the standardised output back to the targets' units. Returns the model
    and what its output is ("logits", "probabilities" or "values")."""
    try:
        model = build_model(**options)
    except ValueError as error:  # Keras' refusal of an argument (a flag's value)
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
        raise UserError(f"build_model({shown}) failed: {first_line(error)}") from None
    if not isinstance(model, keras.Model) or not model.built or not model.inputs:
        raise UserError(
            "build_model must return a Keras model that starts with keras.Input(...), "
            f"got {type(model).__name__}"
        )
    if len(model.outputs) != 1:
        raise UserError(
            f"build_model's model has {len(model.outputs)} outputs; the pipeline trains one"
        )
    output = output_of(model, preprocessing)
    if output == "values":
        layer = preprocessing.output_layer()
        model = keras.Model(model.inputs, layer(model.outputs[0]), name=model.name)
    return model, output


def output_of(model, preprocessing):
    width, options = model.outputs[0].shape[-1], preprocessing.model_options()
    if preprocessing.is_regression:
        if width != options["outputs"]:
            raise UserError(
                f"build_model's output has {width} units but the data have "
                f"{options['outputs']} target value(s); end the model with Dense(outputs)"
            )
        return "values"
    classes = options["classes"]
    if width != classes and not (classes == 2 and width == 1):
        raise UserError(
            f"build_model's output has {width} units but the data have {classes} classes; "
            "end the model with Dense(outputs)"
        )
    activation = last_activation(model)
    if activation in (None, "linear"):
        return "logits"
    if (activation, width > 1) in (("softmax", True), ("sigmoid", False)):
        return "probabilities"
    raise UserError(
        f"build_model's last layer applies {activation} to {width} unit(s); end a "
        "classifier with logits (no activation), softmax, or sigmoid on one unit"
    )


def last_activation(model):
    """The name of the activation the model's output comes out of ("linear", "softmax",
    "relu", ...), or None where its last operation has none (a reshape, an addition)."""
    operation = model.outputs[0]._keras_history.operation
    while isinstance(operation, keras.Model):  # a model used as a layer
        operation = operation.outputs[0]._keras_history.operation
    if isinstance(operation, keras.layers.Softmax):
        return "softmax"
    activation = getattr(operation, "activation", None)
    if activation is None:
        name = type(operation).__name__.lower()  # keras.ops.softmax / sigmoid in a graph
        return name if name in ("softmax", "sigmoid") else None
    return getattr(activation, "__name__", str(activation)).lower()


def use_cudnn(model, setting):
    """--use-cudnn for every LSTM and GRU layer (Keras reads the attribute at each call)."""
    if setting == "auto":
        return
    for layer in recurrent_layers(model):
        if isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)):
            layer.use_cudnn = setting == "true"


def recurrent_layers(model):
    """Every layer of the model, those inside Bidirectional and nested models included."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from recurrent_layers(layer)
        elif isinstance(layer, keras.layers.Bidirectional):
            yield from (layer.forward_layer, layer.backward_layer)
        else:
            yield layer


NAMING_KEYS = {"name", "inbound_nodes", "input_layers", "output_layers"}


def architecture_of(model):
    """A hash of the model's structure (layer types and settings, not weights, and not the
    names Keras numbers per process, which a functional model's wiring refers to)."""

    def unnamed(value):
        if isinstance(value, dict):
            return {k: unnamed(v) for k, v in value.items() if k not in NAMING_KEYS}
        if isinstance(value, list):
            return [unnamed(v) for v in value]
        return value

    config = json.dumps(unnamed(model.get_config()), sort_keys=True, default=str)
    return hashlib.sha256(config.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------
# Compile: loss and metrics follow the task and the output; a script may bring its own
# --------------------------------------------------------------------------------------
def compile_model(
    model, config, output, hooks, steps_per_epoch, steps_per_execution=None
):
    model.compile(
        optimizer=make_optimizer(
            config, steps_per_epoch * config.epochs, hooks.optimizer
        ),
        loss=hooks.loss if hooks.loss is not None else default_loss(model, output),
        metrics=default_metrics(model, output) + list(hooks.metrics or ()),
        steps_per_execution=steps_per_execution or config.steps_per_execution,
    )


def default_loss(model, output):
    if output == "values":
        return keras.losses.MeanSquaredError()
    from_logits = output == "logits"
    if model.outputs[0].shape[-1] == 1:
        return keras.losses.BinaryCrossentropy(from_logits=from_logits)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)


def default_metrics(model, output):
    if output == "values":
        return [
            keras.metrics.MeanAbsoluteError(name="mae"),
            keras.metrics.RootMeanSquaredError(name="rmse"),
        ]
    if model.outputs[0].shape[-1] == 1:
        threshold = 0.0 if output == "logits" else 0.5
        return [keras.metrics.BinaryAccuracy(threshold=threshold, name="accuracy")]
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def make_optimizer(config, total_steps, own=None):
    rate = config.learning_rate
    if config.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            rate, decay_steps=max(1, total_steps)
        )
    make = own if own is not None else OPTIMIZERS[config.optimizer]
    return make(learning_rate=rate, clipnorm=config.clipnorm)


def class_weights(config, y, names, own=None):
    """{class id: weight} for model.fit, or None. balanced: N / (classes x count)."""
    choice = (
        own
        if config.class_weight == "script" and isinstance(own, str)
        else config.class_weight
    )
    if choice == "none":
        return None
    if choice == "balanced":
        counts = np.bincount(y, minlength=len(names)).astype(np.float64)
        return {
            i: float(len(y) / (len(names) * c)) if c else 0.0
            for i, c in enumerate(counts)
        }
    weights = {}
    for key, weight in own.items():
        index = names.index(key) if key in names else key
        if not isinstance(index, (int, np.integer)) or not 0 <= index < len(names):
            raise UserError(
                f"run(class_weight=...): {key!r} is not a class of these data ({', '.join(names)})"
            )
        weights[int(index)] = float(weight)
    return {i: weights.get(i, 1.0) for i in range(len(names))}


def portable_copy(model):
    """A copy of the model on this process alone (call it under without_distribution),
    compiled with one step per call: Keras' torch backend refuses to load a file whose
    saved compile settings ask for more."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    config = model.get_compile_config()
    config["steps_per_execution"] = 1
    copy.compile_from_config(config)
    return copy


# --------------------------------------------------------------------------------------
# The epoch loop's bookkeeping
# --------------------------------------------------------------------------------------
class Progress:
    """What a run has done so far; saved with every finished epoch and restored on resume."""

    def __init__(self, meta=None):
        meta = meta or {}
        self.rows = meta.get("rows", [])
        self.best, self.best_epoch = meta.get("best"), meta.get("best_epoch", 0)
        self.stopped_early = meta.get("stopped_early")
        self.plateau = meta.get("plateau")
        self.learning_rate_argument = meta.get("learning_rate_argument")
        self.restored_epoch = len(self.rows)

    @property
    def epochs_done(self):
        return len(self.rows)

    def meta(self, run, plateau_callback):
        plateau = None
        if plateau_callback is not None:
            plateau = {k: float(getattr(plateau_callback, k)) for k in PLATEAU_STATE}
        return {
            "rows": self.rows,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "plateau": plateau,
            "fingerprint": run.fingerprint,
            "architecture": run.architecture,
            "learning_rate_argument": run.config.learning_rate,  # a new one on resume wins
        }


def score_of(row, regression):
    """The validation score that picks the best epoch (higher is better): accuracy, or for
    a regression the negated loss; the training one where there is no validation split."""
    if regression:
        loss = row.get("val_loss", row.get("loss"))
        return None if loss is None else -loss
    return row.get("val_accuracy", row.get("accuracy"))


class CheckSignals(keras.callbacks.Callback):
    """Stops evaluation and prediction at the next batch after a signal."""

    def __init__(self, run):
        super().__init__()
        self.run = run

    def on_test_batch_end(self, batch, logs=None):
        self.run.check_signals()

    def on_predict_batch_end(self, batch, logs=None):
        self.run.check_signals()


class KeepProgress(CheckSignals):
    """Per batch: stop on a signal or a non-finite loss. Per epoch: the history row, the
    best model, early stopping, then the state for resume (every file replaced whole).

    Early stopping is kept here rather than in keras.callbacks.EarlyStopping: it needs the
    best epoch that best.keras needs anyway, and Keras' callback resets its counters when
    fit starts, so resuming it exactly would mean reaching into its attributes."""

    def __init__(self, run, progress, steps_per_epoch, plateau=None):
        super().__init__(run)
        self.progress, self.steps_per_epoch = progress, steps_per_epoch
        self.plateau = plateau
        self.epoch, self.started, self.last_batch = 0, 0.0, 0

    def on_train_begin(self, logs=None):
        if self.plateau is not None and self.progress.plateau:
            for name, value in self.progress.plateau.items():
                setattr(self.plateau, name, value)  # after its own on_train_begin reset

    def on_epoch_begin(self, epoch, logs=None):
        self.run.check_signals()  # a signal during the last epoch's end stops here
        self.epoch, self.started, self.last_batch = epoch, time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self.run.check_signals()
        loss = float((logs or {}).get("loss", 0.0))
        last = min(batch + 1, self.steps_per_epoch)
        if not math.isfinite(loss):
            where = (
                f"batch {last}"
                if last == self.last_batch + 1
                else f"batches {self.last_batch + 1}-{last}"
            )
            raise TrainingStopped(
                f"loss became {loss} at epoch {self.epoch + 1}, {where}", EXIT_FAILED
            )
        self.last_batch = last

    def on_epoch_end(self, epoch, logs=None):
        progress, logs = self.progress, logs or {}
        row = {
            "epoch": epoch + 1,
            **{k: float(v) for k, v in logs.items() if k != "learning_rate"},
        }
        if not math.isfinite(row.get("val_loss", 0.0)):
            raise TrainingStopped(
                f"the validation loss became {row['val_loss']} at epoch {epoch + 1}",
                EXIT_FAILED,
            )
        row.update(
            learning_rate=learning_rate(self.model),
            seconds=time.perf_counter() - self.started,
        )
        progress.rows.append(row)
        score = score_of(row, self.run.regression)
        if score is not None and (progress.best is None or score > progress.best):
            progress.best, progress.best_epoch = score, epoch + 1
            self.run.best_weights = self.model.get_weights()
            self.run.save_best(self.model)
        patience = self.run.config.early_stopping
        if patience and epoch + 1 - progress.best_epoch >= patience:
            progress.stopped_early = epoch + 1
            self.model.stop_training = True
        self.run.save_epoch(self.model, progress.meta(self.run, self.plateau))


class FlushedTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, its logs flushed at every epoch's end (its writers
    buffer for up to two minutes, and a killed run would lose epochs that the saved state
    counts as done), and each epoch logged once: a run killed after the flush but before the
    epoch's state was saved trains that epoch again, to the same figures, and would log it
    twice. logs/epochs-logged holds the last epoch logged."""

    def __init__(self, run_dir, **options):
        super().__init__(str(run_dir.path / "logs"), **options)
        self.run_dir, self.marker = run_dir, run_dir.path / LOGGED_EPOCHS
        self.logged = int(self.marker.read_text()) if self.marker.is_file() else 0

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 <= self.logged:
            return
        super().on_epoch_end(epoch, logs)
        for writer in self._writers.values():
            writer.flush()
        self.logged = epoch + 1
        self.run_dir.write_text(LOGGED_EPOCHS, str(self.logged))


def learning_rate(model):
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def restore(model, run):
    """Weights, optimizer state and progress of the newest saved epoch that reads back
    (the one before, with a line saying so, if the newest is damaged); a fresh Progress if
    there is none."""
    run_dir, states = run.run_dir, run.run_dir.states()
    for path in states:
        try:
            weights, optimizer_values, meta = read_state(path)
        except DamagedState as error:
            print(
                f"warning: {path} cannot be used ({str(error)[:150]}); trying the epoch before"
            )
            continue
        if meta.get("architecture") not in (None, run.architecture):
            raise UserError(
                f"{run_dir} holds a run of another model (build_model or its flags differ "
                "from the ones it started with); continue it with the script that started "
                "it, or choose another --output-dir"
            )
        try:
            assign(model, weights, optimizer_values)
        except ValueError as error:
            print(
                f"warning: {path} cannot be used ({str(error)[:150]}); trying the epoch before"
            )
            continue
        if (
            meta.get("fingerprint") != run.fingerprint
            and not run.config.allow_data_change
        ):
            raise UserError(
                f"{run_dir} was trained on other data than these (their fingerprint "
                "differs); pass --allow-data-change to continue anyway"
            )
        return Progress(meta)
    if states:
        raise UserError(
            f"no saved epoch in {run_dir}/training-state can be read; start again with --overwrite"
        )
    return Progress()


def assign(model, weights, optimizer_values):
    """Copy saved weights and optimizer variables into the freshly built model."""
    model.set_weights(weights)
    model.optimizer.build(model.trainable_variables)
    variables = model.optimizer.variables
    if len(variables) != len(optimizer_values):
        raise ValueError("the optimizer state does not fit this model")
    for variable, value in zip(variables, optimizer_values):
        variable.assign(value)


def optimizer_values(model):
    return [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]


def plateau_callback(config, has_validation):
    if config.lr_schedule != "plateau":
        return None
    monitor = "val_loss" if has_validation else "loss"
    return keras.callbacks.ReduceLROnPlateau(monitor=monitor, verbose=1, **PLATEAU)


def fit_verbosity():
    try:
        return 1 if sys.stdout.isatty() else 2  # a progress bar only on a terminal
    except (ValueError, AttributeError):  # stdout closed
        return 0


def train(
    model,
    data,
    preprocessing,
    run,
    progress,
    distribution,
    extra_callbacks,
    class_weight,
):
    """model.fit from the first unfinished epoch; returns the number of training rows."""
    config = run.config
    train_split = feed.even_rows(data.train, distribution.replicas)
    start = progress.epochs_done
    if progress.stopped_early or start >= config.epochs:
        return len(train_split)
    validation = None
    if len(data.validation):
        local = distribution.local_split(
            feed.even_rows(data.validation, distribution.replicas)
        )
        validation = feed.validation_data(
            local, preprocessing, feed.EVAL_BATCH_SIZE // distribution.process_count
        )
    part, parts = distribution.process_index, distribution.process_count
    order = feed.EpochOrder(len(train_split), config.seed, start)
    train_feed = feed.training_feed(
        train_split, preprocessing, config.batch_size, order, part, parts
    )
    steps = -(-len(train_split) // config.batch_size)
    plateau = plateau_callback(config, validation is not None)
    # The order first, the state last (after the epoch's learning rate and logs are in).
    callbacks = [feed.FollowEpochs(order)] + ([plateau] if plateau else [])
    callbacks += list(extra_callbacks)
    callbacks += run.extra_callbacks() + [KeepProgress(run, progress, steps, plateau)]
    model.fit(
        train_feed,
        validation_data=validation,
        validation_batch_size=feed.EVAL_BATCH_SIZE // parts,
        epochs=config.epochs,
        initial_epoch=start,
        shuffle=False,  # the feed is in (seed, epoch) order already
        callbacks=callbacks,
        class_weight=class_weight,
        verbose=fit_verbosity(),
    )
    return len(train_split)
