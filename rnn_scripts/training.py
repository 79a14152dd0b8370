"""The model (built, checked, compiled with what run() was given) and the epoch loop: the
history, the best model, early stopping, the plateau schedule, TensorBoard, and the saved
state after every epoch that makes a resumed run equal an uninterrupted one (resume.py
reads it back)."""

import hashlib
import inspect
import json
import math
import sys
import time

import keras
import numpy as np

from . import feed
from .errors import EXIT_FAILED, TrainingStopped, UsageError, UserError, first_line

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": keras.optimizers.SGD,
}
PLATEAU = {"factor": 0.5, "patience": 2, "min_lr": 1e-6}  # --lr-schedule plateau
PLATEAU_STATE = ("wait", "best", "cooldown_counter")  # what ReduceLROnPlateau counts
LOGGED_EPOCHS = "logs/epochs-logged"
NAMING_KEYS = {"name", "inbound_nodes", "input_layers", "output_layers"}


# --------------------------------------------------------------------------------------
# run()'s arguments, resolved into Keras objects once Keras has loaded
# --------------------------------------------------------------------------------------
def resolve_hooks(hooks):
    """The run() arguments as Keras objects (names looked up, functions of no arguments
    called), each checked now, so that a misspelled name or a wrong type is one line
    naming the argument rather than a traceback from inside fit."""
    loss = called(hooks.loss)
    if loss is not None:
        loss = keras_object("loss", loss, keras.losses, keras.losses.Loss)
    metrics = called(hooks.metrics)
    if metrics is not None:
        listed = metrics if isinstance(metrics, list | tuple) else [metrics]
        metrics = [
            keras_object("metrics", m, keras.metrics, keras.metrics.Metric)
            for m in listed
        ]
    callbacks = called(hooks.callbacks)
    listed = (
        []
        if callbacks is None
        else callbacks
        if isinstance(callbacks, list | tuple)
        else [callbacks]
    )
    for callback in listed:
        if not isinstance(callback, keras.callbacks.Callback):
            raise UsageError(
                f"run(callbacks=...): {callback!r} is not a keras.callbacks.Callback"
            )
    class_weight, optimizer = (
        called(hooks.class_weight),
        optimizer_maker(hooks.optimizer),
    )
    return type(hooks)(loss, metrics, optimizer, listed, class_weight)


def no_arguments(value):
    """Whether a run() argument is a no-argument function (called once Keras is in)."""
    if not callable(value) or isinstance(
        value, type | keras.losses.Loss | keras.metrics.Metric
    ):
        return False
    try:
        parameters = inspect.signature(value).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in parameters
    )


def called(value):
    return value() if no_arguments(value) else value


def keras_object(argument, value, module, kind):
    """A loss or metric: a name Keras knows, a Keras object, or a function of
    (y_true, y_pred)."""
    if isinstance(value, str):
        try:
            module.get(value)
        except (ValueError, TypeError):
            known = ", ".join(
                sorted(n for n in dir(module) if n.islower() and not n.startswith("_"))[
                    :12
                ]
            )
            raise UsageError(
                f"run({argument}={value!r}): not a name Keras knows (such as {known}, "
                "...)"
            ) from None
        return value
    if isinstance(value, kind):
        return value
    if callable(value) and takes(value, 2):
        return value
    raise UsageError(
        f"run({argument}=...): expected a name, a "
        f"keras.{module.__name__.split('.')[-1]} "
        f"object or a function of (y_true, y_pred), got {value!r}"[:300]
    )


def takes(function, count):
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return True  # a builtin: Keras will say
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return True
    positional = [
        p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    required = [p for p in positional if p.default is p.empty]
    return len(required) <= count <= len(positional)


def optimizer_maker(value):
    """run(optimizer=...) as a function of (learning_rate=, clipnorm=): a name, a class,
    such a function, an optimizer object (its settings kept, the rate and clipping the
    flags'), or a function of no arguments that returns one of these."""
    value = called(value)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return type(keras.optimizers.get(value))
        except (ValueError, TypeError):
            known = ", ".join(sorted(OPTIMIZERS) + ["adamw", "nadam", "adagrad", "..."])
            raise UsageError(
                f"run(optimizer={value!r}): not an optimizer Keras knows ({known})"
            ) from None
    if isinstance(value, keras.optimizers.Optimizer):
        settings = value.get_config()
        return lambda **flags: type(value).from_config({**settings, **flags})
    if isinstance(value, type) and issubclass(value, keras.optimizers.Optimizer):
        return value
    if callable(value) and not isinstance(value, type):
        return value
    raise UsageError(
        f"run(optimizer=...): expected a name, a keras.optimizers class or object, or a "
        f"function of (learning_rate=, clipnorm=), got {value!r}"[:300]
    )


# --------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------
def build(build_model, options, preprocessing):
    """build_model(**options), checked against the data; for a regression, followed by a
    layer that takes the standardised output back to the targets' units. Returns the
    model and what its output is ("logits", "probabilities" or "values")."""
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
    if len(model.inputs) != 1:
        raise UserError(
            f"build_model's model takes {len(model.inputs)} inputs; the pipeline feeds "
            "one (the examples)"
        )
    if len(model.outputs) != 1:
        raise UserError(
            f"build_model's model has {len(model.outputs)} outputs; the pipeline "
            "trains one"
        )
    width = preprocessing.model_options()["outputs"]
    output = output_of(model, width, preprocessing.is_regression)
    if output == "values":
        layer = preprocessing.output_layer()
        model = keras.Model(model.inputs, layer(model.outputs[0]), name=model.name)
    return model, output


def output_of(model, width, regression):
    """What the model's output is: "values" (a regression), "logits" or "probabilities";
    one line where its width or its last activation does not fit `width` outputs."""
    found = model.outputs[0].shape[-1]
    if found != width and not (width == 2 and found == 1 and not regression):
        what = f"{width} target value(s)" if regression else f"{width} classes"
        raise UserError(
            f"build_model's output has {found} units but the data have {what}; end the "
            "model with Dense(outputs)"
        )
    if regression:
        return "values"
    activation = last_activation(model)
    if activation in (None, "linear"):
        return "logits"
    if (activation, found > 1) in (("softmax", True), ("sigmoid", False)):
        return "probabilities"
    raise UserError(
        f"build_model's last layer applies {activation} to {found} unit(s); end a "
        "classifier with logits (no activation), softmax, or sigmoid on one unit"
    )


def last_activation(model):
    """The name of the activation the model's output comes out of ("linear", "softmax",
    "relu", ...), or None where its last operation has none (a reshape, an addition).
    A functional model's operations are in the order they run: its output's is last."""
    operation = model
    while isinstance(operation, keras.Model):  # a model used as a layer
        operation = (
            operation.layers
            if isinstance(operation, keras.Sequential)
            else operation.operations
        )[-1]
    if isinstance(operation, keras.layers.Softmax):
        return "softmax"
    activation = getattr(operation, "activation", None)
    if activation is None:
        name = type(operation).__name__.lower()  # keras.ops.softmax / sigmoid in a graph
        return name if name in ("softmax", "sigmoid") else None
    return getattr(activation, "__name__", str(activation)).lower()


def use_cudnn(model, setting):
    """--use-cudnn for every LSTM and GRU layer (Keras reads it at each call)."""
    if setting == "auto":
        return
    for layer in recurrent_layers(model):
        if isinstance(layer, keras.layers.LSTM | keras.layers.GRU):
            layer.use_cudnn = setting == "true"


def recurrent_layers(model):
    """Every layer, those inside Bidirectional and nested models included."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from recurrent_layers(layer)
        elif isinstance(layer, keras.layers.Bidirectional):
            yield from (layer.forward_layer, layer.backward_layer)
        else:
            yield layer


def architecture_of(model):
    """A hash of the model's structure (layer types and settings, not weights, and not
    the names Keras numbers per process, which a functional model's wiring refers to)."""

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
def compile_model(model, config, output, hooks, steps_per_epoch):
    rate = config.learning_rate
    if config.lr_schedule == "cosine":
        total = max(1, steps_per_epoch * config.epochs)
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=total)
    make = hooks.optimizer or OPTIMIZERS[config.optimizer]
    try:
        optimizer = make(learning_rate=rate, clipnorm=config.clipnorm)
    except TypeError as error:
        raise UsageError(f"run(optimizer=...): {first_line(error)}") from None
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise UsageError(
            f"run(optimizer=...) made {optimizer!r}, not a keras optimizer"[:200]
        )
    model.compile(
        optimizer=optimizer,
        loss=hooks.loss if hooks.loss is not None else default_loss(model, output),
        metrics=default_metrics(model, output) + list(hooks.metrics or ()),
        steps_per_execution=config.steps_per_execution,
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
        mae, rmse = keras.metrics.MeanAbsoluteError, keras.metrics.RootMeanSquaredError
        return [mae(name="mae"), rmse(name="rmse")]
    if model.outputs[0].shape[-1] == 1:  # a logit's threshold is 0, a probability's 0.5
        threshold = 0.0 if output == "logits" else 0.5
        return [keras.metrics.BinaryAccuracy(threshold=threshold, name="accuracy")]
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def class_weights(config, y, names, own=None):
    """{class id: weight} for model.fit, or None. balanced: N / (classes x count)."""
    own_choice = config.class_weight == "script" and isinstance(own, str)
    choice = own if own_choice else config.class_weight
    if choice == "none":
        return None
    if choice == "balanced":
        counts = np.bincount(y, minlength=len(names)).astype(np.float64)
        return {
            i: float(len(y) / (len(names) * c)) if c else 0.0
            for i, c in enumerate(counts)
        }
    if not isinstance(own, dict):
        raise UsageError(
            f"run(class_weight=...): expected a dict or 'balanced', got {own!r}"
        )
    weights = {}
    for key, weight in own.items():
        index = names.index(key) if key in names else key
        if not isinstance(index, int | np.integer) or not 0 <= index < len(names):
            raise UserError(
                f"run(class_weight=...): {key!r} is not a class of these data "
                f"({', '.join(names)})"
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
# The epoch loop
# --------------------------------------------------------------------------------------
def monitor_of(config, regression):
    """--monitor: what picks best.keras, early stopping and the plateau schedule's
    epochs (auto: the validation accuracy, or a regression's validation loss)."""
    if config.monitor != "auto":
        return config.monitor
    return "val_loss" if regression else "val_accuracy"


def higher_is_better(monitor):
    return "acc" in monitor  # Keras' own rule (mode "auto")


def score_of(row, monitor):
    """The monitored figure of an epoch, as a score where higher is better (the training
    figure where there is no validation split), or None."""
    value = row.get(monitor, row.get(monitor.removeprefix("val_")))
    if value is None:
        return None
    return value if higher_is_better(monitor) else -value


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

    Early stopping is kept here rather than in keras.callbacks.EarlyStopping: it needs
    the best epoch that best.keras needs anyway, and Keras' callback resets its counters
    when fit starts, so resuming it exactly would mean reaching into its attributes."""

    def __init__(self, run, progress, steps_per_epoch, plateau=None):
        super().__init__(run)
        self.progress, self.steps_per_epoch, self.plateau = (
            progress,
            steps_per_epoch,
            plateau,
        )
        self.monitor = monitor_of(run.config, run.regression)
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
            first = self.last_batch + 1
            where = f"batch {last}" if last == first else f"batches {first}-{last}"
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
        score = score_of(row, self.monitor)
        if score is None:
            figures = ", ".join(k for k in row if k != "epoch")
            raise UsageError(
                f"--monitor {self.monitor}: not a figure the run logs ({figures})"
            )
        row.update(
            learning_rate=learning_rate(self.model),
            seconds=time.perf_counter() - self.started,
        )
        progress.rows.append(row)
        if progress.best is None or score > progress.best:  # a tie is not better
            progress.best, progress.best_epoch = score, epoch + 1
            self.run.best_weights = self.model.get_weights()
            self.run.save_best(self.model)
        patience = self.run.config.early_stopping
        if patience and epoch + 1 - progress.best_epoch >= patience:
            progress.stopped_early = epoch + 1
            self.model.stop_training = True
        plateau = None
        if self.plateau is not None:
            plateau = {k: float(getattr(self.plateau, k)) for k in PLATEAU_STATE}
        self.run.save_epoch(self.model, progress.meta(self.run, plateau))


class EpochLog(keras.callbacks.Callback):
    """--tensorboard: each epoch's figures (and the learning rate) as TensorBoard scalars
    in RUN/logs/train and RUN/logs/validation, flushed at once (a killed run keeps
    every epoch its state counts as done), and each epoch written once: a run killed
    after the flush but before the epoch's state was saved trains that epoch again, to
    the same figures. logs/epochs-logged holds the last epoch written."""

    def __init__(self, run_dir):
        import tensorflow as tf

        super().__init__()
        self.run_dir, marker = run_dir, run_dir.path / LOGGED_EPOCHS
        self.logged = int(marker.read_text()) if marker.is_file() else 0
        folder = run_dir.path / "logs"
        self.writers = {
            part: tf.summary.create_file_writer(str(folder / part))
            for part in ("train", "validation")
        }

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        if epoch + 1 <= self.logged:
            return
        figures = {**(logs or {}), "learning_rate": learning_rate(self.model)}
        for name, value in figures.items():
            part = "validation" if name.startswith("val_") else "train"
            with self.writers[part].as_default():
                tf.summary.scalar(
                    "epoch_" + name.removeprefix("val_"), float(value), step=epoch
                )
        for writer in self.writers.values():
            writer.flush()
        self.logged = epoch + 1
        self.run_dir.write_text(LOGGED_EPOCHS, str(self.logged))

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()


class ProgressBar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, its step kept within the epoch: with several steps per
    compiled call, Keras reports the last call's full width past the epoch's end."""

    def on_train_batch_end(self, batch, logs=None):
        steps = self.target  # what Keras' progress bar counts to
        super().on_train_batch_end(
            batch if steps is None else min(batch, steps - 1), logs
        )


def learning_rate(model):
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def fit_verbosity():
    try:
        return 1 if sys.stdout.isatty() else 2  # a progress bar only on a terminal
    except (ValueError, AttributeError):  # stdout closed
        return 0


def train(model, data, preprocessing, run, progress):
    """model.fit from the first unfinished epoch; returns the number of training rows."""
    config, distribution = run.config, run.distribution
    train_split = feed.even_rows(data.train, distribution.replicas)
    start = progress.epochs_done
    if progress.stopped_early or start >= config.epochs:
        return len(train_split)
    part, parts = distribution.process_index, distribution.process_count
    validation = None
    if len(data.validation):
        local = distribution.local_split(
            feed.even_rows(data.validation, distribution.replicas)
        )
        validation = feed.validation_data(
            local, preprocessing, feed.EVAL_BATCH_SIZE // parts
        )
    order = feed.EpochOrder(len(train_split), config.seed, start)
    batches = feed.training_feed(
        train_split, preprocessing, config.batch_size, order, part, parts
    )
    steps = -(-len(train_split) // config.batch_size)
    plateau = None
    if config.lr_schedule == "plateau":
        monitor = monitor_of(config, run.regression)
        if validation is None:
            monitor = monitor.removeprefix("val_")
        plateau = keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, verbose=1, **PLATEAU
        )
    # The order first, the state last (after the epoch's learning rate and logs are in).
    callbacks = [feed.FollowEpochs(order), ProgressBar()] + (
        [plateau] if plateau else []
    )
    callbacks += list(run.hooks.callbacks or ())
    if config.tensorboard and run.run_dir.writer:
        callbacks.append(EpochLog(run.run_dir))
    callbacks.append(KeepProgress(run, progress, steps, plateau))
    weights = None
    if not run.regression:
        weights = class_weights(
            config, data.train.y, data.class_names, run.hooks.class_weight
        )
    model.fit(
        batches,
        validation_data=validation,
        validation_batch_size=feed.EVAL_BATCH_SIZE // parts,
        epochs=config.epochs,
        initial_epoch=start,
        shuffle=False,  # the feed is in (seed, epoch) order already
        callbacks=callbacks,
        class_weight=weights,
        verbose=fit_verbosity(),
    )
    return len(train_split)
