"""Model, compile, the feed, and the epoch loop's bookkeeping: history, best model, early
stopping and the saved state that makes a resumed run equal an uninterrupted one."""

import inspect
import math
import sys
import time

import keras
import numpy as np

from .devices import EVAL_BATCH_SIZE
from .errors import EXIT_FAILED, TrainingStopped, UserError
from .rundir import DamagedState, read_state

HISTORY_FIELDS = (
    "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds",
)  # fmt: skip
OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": keras.optimizers.SGD,
}
PLATEAU = {"factor": 0.5, "patience": 2, "min_lr": 1e-6}  # --lr-schedule plateau
PLATEAU_STATE = ("wait", "best", "cooldown_counter")  # what ReduceLROnPlateau counts


# --------------------------------------------------------------------------------------
# Model and compile
# --------------------------------------------------------------------------------------
def build(build_model, options):
    """Call build_model with the options its signature names; check what it returns."""
    wanted = inspect.signature(build_model).parameters
    model = build_model(**{k: v for k, v in options.items() if k in wanted})
    if not isinstance(model, keras.Model) or not model.built:
        raise UserError(
            "build_model must return a Keras model that starts with keras.Input(...), "
            f"got {type(model).__name__}"
        )
    classes, width = options["classes"], model.outputs[0].shape[-1]
    if width != classes and not (classes == 2 and width == 1):
        raise UserError(
            f"build_model's output has {width} units but the data have {classes} classes; "
            "end the model with Dense(classes)"
        )
    return model


def compile_model(model, args, steps_per_epoch, steps_per_execution=None):
    """The one compile recipe: loss and metric follow the output (1 logit: binary)."""
    if model.outputs[0].shape[-1] == 1:
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
        accuracy = keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")  # on logits
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(
        optimizer=make_optimizer(args, steps_per_epoch * args.epochs),
        loss=loss,
        metrics=[accuracy],
        steps_per_execution=steps_per_execution or args.steps_per_execution,
    )


def make_optimizer(args, total_steps):
    rate = args.learning_rate
    if args.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=max(1, total_steps))
    return OPTIMIZERS[args.optimizer](learning_rate=rate, clipnorm=args.clipnorm)


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
# The feed: batch order is a function of (seed, epoch) only, so a resumed run trains the
# same batches as an uninterrupted one. Keras starts a new pass over the feed for every
# epoch (a pass must end with its epoch: with several steps per call, a longer stream
# would run on into the next epoch), and each pass takes the next epoch's order.
# --------------------------------------------------------------------------------------
class EpochOrder:
    """The row order of each epoch to train, one per pass over the data."""

    def __init__(self, count, seed, epochs):
        self.count, self.seed, self.epochs, self.passes = count, seed, list(epochs), 0

    def next_epoch(self):
        epoch = self.epochs[min(self.passes, len(self.epochs) - 1)]
        self.passes += 1
        return epoch_order(self.count, self.seed, epoch)


def epoch_order(count, seed, epoch):
    return np.random.default_rng([seed, epoch]).permutation(count)


def batch_rows(order, batch_size, part=0, parts=1):
    """Row numbers of each batch, in order; with parts > 1, share `part` of each batch (the
    processes of a multi-process run each feed theirs)."""
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        share = len(rows) // parts
        yield rows[part * share : (part + 1) * share]


class EpochBatches(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size, order, part=0, parts=1):
        super().__init__()
        self.x, self.y, self.order = x, y, order
        self.split = (batch_size, part, parts)
        self.rows = list(batch_rows(order.next_epoch(), *self.split))
        self.order.passes = 0  # the first pass (on_epoch_begin) takes the first epoch again

    def on_epoch_begin(self):
        self.rows = list(batch_rows(self.order.next_epoch(), *self.split))

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        rows = self.rows[index]
        return self.x[rows], self.y[rows]


def training_feed(x, y, batch_size, seed, epochs, part=0, parts=1):
    """What model.fit trains on for `epochs` (a range).

    On TensorFlow a tf.data pipeline gathers the rows, asking Python only for each epoch's
    order: a Python feed per batch (PyDataset or generator) runs through tf.py_function
    there and kept TensorFlow on one core (docs/performance.md). The other backends iterate
    in Python anyway."""
    order = EpochOrder(len(x), seed, epochs)
    if keras.backend.backend() != "tensorflow":
        return EpochBatches(x, y, batch_size, order, part, parts)
    import tensorflow as tf  # one process on TensorFlow: part 0 of 1

    def one_epoch(_):
        rows = tf.numpy_function(order.next_epoch, [], tf.int64, stateful=True)
        rows.set_shape([len(x)])
        return tf.data.Dataset.from_tensor_slices(rows).batch(batch_size)

    x, y = tf.constant(x), tf.constant(y)
    return (
        tf.data.Dataset.from_tensors(0)
        .flat_map(one_epoch)
        .map(lambda rows: (tf.gather(x, rows), tf.gather(y, rows)))
        .apply(tf.data.experimental.assert_cardinality(-(-order.count // batch_size)))
        .prefetch(tf.data.AUTOTUNE)
    )


def even_rows(x, y, multiple):
    """Drop the last len(x) % multiple rows (at most multiple - 1) when a batch is split
    over several devices, where an uneven batch fails: JAX cannot shard it, and Keras'
    MirroredStrategy step fails on unequal replica inputs (AddN)."""
    keep = len(x) - len(x) % multiple
    return (x, y) if keep == len(x) else (x[:keep], y[:keep])


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

    def meta(self, fingerprint, plateau_callback, learning_rate_argument):
        plateau = None
        if plateau_callback is not None:
            plateau = {k: float(getattr(plateau_callback, k)) for k in PLATEAU_STATE}
        return {
            "rows": self.rows,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "plateau": plateau,
            "fingerprint": fingerprint,
            "learning_rate_argument": learning_rate_argument,  # a new one on resume wins
        }


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
        self.epoch, self.started, self.last_batch = epoch, time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self.run.check_signals()
        loss = float((logs or {}).get("loss", 0.0))
        last = min(batch + 1, self.steps_per_epoch)
        if not math.isfinite(loss):
            where = f"batch {last}" if last == self.last_batch + 1 else f"batches {self.last_batch + 1}-{last}"
            raise TrainingStopped(
                f"loss became {loss} at epoch {self.epoch + 1}, {where}", EXIT_FAILED
            )
        self.last_batch = last

    def on_epoch_end(self, epoch, logs=None):
        progress, logs = self.progress, logs or {}
        row = {k: (float(logs[k]) if k in logs else None) for k in HISTORY_FIELDS[1:5]}
        row.update(epoch=epoch + 1, learning_rate=learning_rate(self.model))
        row["seconds"] = time.perf_counter() - self.started
        progress.rows.append(row)
        score = row["val_accuracy"] if row["val_accuracy"] is not None else row["accuracy"]
        if score is not None and (progress.best is None or score > progress.best):
            progress.best, progress.best_epoch = score, epoch + 1
            self.run.best_weights = self.model.get_weights()
            self.run.save_best(self.model)
        patience = self.run.args.early_stopping
        if patience and epoch + 1 - progress.best_epoch >= patience:
            progress.stopped_early = epoch + 1
            self.model.stop_training = True
        meta = progress.meta(self.run.fingerprint, self.plateau, self.run.args.learning_rate)
        self.run.save_epoch(self.model, meta)
        self.run.check_signals()  # this epoch is kept; stop before the next


class FlushedTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, its logs flushed at every epoch's end: its writers
    buffer for up to two minutes, and a killed run would lose epochs that the saved state
    counts as done."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        for writer in self._writers.values():
            writer.flush()


def learning_rate(model):
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def restore(model, run_dir, fingerprint, allow_data_change):
    """Weights, optimizer state and progress of the newest saved epoch that reads back
    (the one before, with a line saying so, if the newest is damaged); None if none."""
    states = run_dir.states()
    for path in states:
        try:
            weights, optimizer_values, meta = read_state(path)
            assign(model, weights, optimizer_values)
        except (DamagedState, ValueError) as error:
            print(f"warning: {path} cannot be used ({str(error)[:150]}); trying the epoch before")
            continue
        if meta.get("fingerprint") != fingerprint and not allow_data_change:
            raise UserError(
                f"{run_dir} was trained on other data than these (their fingerprint "
                "differs); pass --allow-data-change to continue anyway"
            )
        return Progress(meta)
    if states:
        raise UserError(
            f"no saved epoch in {run_dir}/training-state can be read; start again "
            "with --overwrite"
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


def plateau_callback(args, has_validation):
    if args.lr_schedule != "plateau":
        return None
    monitor = "val_loss" if has_validation else "loss"
    return keras.callbacks.ReduceLROnPlateau(monitor=monitor, verbose=1, **PLATEAU)


def fit_verbosity():
    return 1 if sys.stdout.isatty() else 2  # a progress bar only on a terminal


def train(model, data, args, run, progress, distribution):
    """model.fit from the first unfinished epoch; returns the number of training rows."""
    x, y = even_rows(data.x_train, data.y_train, distribution.replicas)
    validation = None
    if len(data.x_val):
        validation = distribution.local_rows(*even_rows(data.x_val, data.y_val, distribution.replicas))
    start = progress.epochs_done
    if progress.stopped_early or start >= args.epochs:
        return len(x)
    part, parts = distribution.process_index, distribution.process_count
    epochs = range(start, args.epochs)
    feed = training_feed(x, y, args.batch_size, args.seed, epochs, part, parts)
    steps = -(-len(x) // args.batch_size)
    plateau = plateau_callback(args, validation is not None)
    # The state is saved last, after the epoch's learning rate and logs are in.
    callbacks = [plateau] if plateau else []
    callbacks += run.extra_callbacks() + [KeepProgress(run, progress, steps, plateau)]
    model.fit(
        feed,
        validation_data=validation,
        validation_batch_size=EVAL_BATCH_SIZE // parts,
        epochs=args.epochs,
        initial_epoch=start,
        shuffle=False,  # the feed is in (seed, epoch) order already
        callbacks=callbacks,
        verbose=fit_verbosity(),
    )
    return len(x)
