"""What model.fit, evaluate and predict read: batches in a fixed order.

The batch order is a function of (seed, epoch) only, so a resumed run trains the same
batches as an uninterrupted one. Keras starts a new pass over the feed for every epoch (a
pass must end with its epoch: with several steps per call, a longer stream would run on
into the next epoch), and each pass takes the next epoch's order.

Examples in memory were prepared once (preprocess.apply_to); examples on disk
(data/rows.py) are read and prepared batch by batch inside tf.data (texts: their word
ids, written once to a scratch file), so memory holds a few batches.
"""

import keras
import numpy as np

from .data.rows import TokenIds

# Keras evaluates 32 rows a step by default; 1024 is faster (docs/performance.md).
EVAL_BATCH_SIZE = 1024


class EpochOrder:
    """The row order of the epoch being trained. It follows the fit loop's own epoch (set
    by FollowEpochs), not the number of passes over the data: under a distribution
    strategy Keras' TensorFlow trainer takes a first batch to build the model, a pass
    that no epoch trains."""

    def __init__(self, count, seed, first_epoch):
        self.count, self.seed, self.epoch = count, seed, first_epoch

    def rows(self):
        return epoch_order(self.count, self.seed, self.epoch)


class FollowEpochs(keras.callbacks.Callback):
    """Tells an EpochOrder which epoch the fit loop begins (before it reads a batch)."""

    def __init__(self, order):
        super().__init__()
        self.order = order

    def on_epoch_begin(self, epoch, logs=None):
        self.order.epoch = epoch


def epoch_order(count, seed, epoch):
    return np.random.default_rng([seed, epoch]).permutation(count)


def batch_rows(order, batch_size, part=0, parts=1):
    """Row numbers of each batch, in order; with parts > 1, share `part` of each batch
    (the processes of a multi-process run each feed theirs)."""
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        share = len(rows) // parts
        yield rows[part * share : (part + 1) * share]


def training_feed(split, preprocessing, batch_size, order, part=0, parts=1):
    """What model.fit trains on, each epoch in its EpochOrder."""
    if split.streamed:
        return streamed_feed(split, preprocessing, batch_size, order, part, parts)
    if keras.backend.backend() != "tensorflow":
        return EpochBatches(split.x, split.y, batch_size, order, part, parts)
    return tensorflow_feed(split.x, split.y, batch_size, order)


def tensorflow_feed(x, y, batch_size, order):
    """On TensorFlow a tf.data pipeline gathers the rows, asking Python only for each
    epoch's order: a Python feed per batch (PyDataset or generator) runs through
    tf.py_function there and kept TensorFlow on one core (docs/performance.md)."""
    import tensorflow as tf  # one process on TensorFlow: part 0 of 1

    def one_epoch(_):
        rows = tf.numpy_function(order.rows, [], tf.int64, stateful=True)
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


class EpochBatches(keras.utils.PyDataset):
    """Batches of in-memory rows in each epoch's order (JAX and torch iterate them)."""

    def __init__(self, x, y, batch_size, order, part=0, parts=1):
        super().__init__()
        self.x, self.y, self.order = x, y, order
        self.split = (batch_size, part, parts)
        self.on_epoch_begin()

    def on_epoch_begin(self):  # Keras calls it after the callbacks' on_epoch_begin
        self.rows = list(batch_rows(self.order.rows(), *self.split))

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        rows = self.rows[index]
        return self.x[rows], self.y[rows]


def streamed_feed(split, preprocessing, batch_size, order, part=0, parts=1):
    """Rows read from disk: each epoch's order split into batches, each batch read and
    prepared in a tf.data worker thread while the model trains on the one before."""
    import tensorflow as tf

    rows = tf.data.Dataset.from_tensors(0).flat_map(
        lambda _: epoch_row_batches(order, batch_size, part, parts)
    )
    batches = -(-order.count // batch_size)
    return (
        prepared_batches(rows, split, preprocessing)
        .apply(tf.data.experimental.assert_cardinality(batches))
        .prefetch(2)
    )


def epoch_row_batches(order, batch_size, part, parts):
    """One epoch's batches of row numbers: this process's share of each batch (the shares
    of full batches are batch_size / parts long, the last batch's share is cut alike)."""
    import tensorflow as tf

    def rows_of_this_epoch():
        return np.concatenate(list(batch_rows(order.rows(), batch_size, part, parts)))

    rows = tf.numpy_function(rows_of_this_epoch, [], tf.int64, stateful=True)
    rows.set_shape([None])
    return tf.data.Dataset.from_tensor_slices(rows).batch(batch_size // parts)


def prepared_batches(row_batches, split, preprocessing):
    """(model input, targets) for each batch of row numbers: the rows read in Python,
    then prepared in NumPy (texts' word ids were prepared before training)."""
    import tensorflow as tf

    kind, y = preprocessing.kind, tf.constant(split.y)
    ready = isinstance(split.x, TokenIds)
    dtype = tf.as_dtype(kind.dtype)

    def read(rows):
        x = split.x.read(rows) if ready else kind.prepare(split.x.read(rows))
        return np.asarray(x, dtype.as_numpy_dtype)

    def load(rows):
        x = tf.numpy_function(read, [rows], dtype)
        x.set_shape([None, *kind.example_shape()])
        return x, tf.gather(y, rows)

    return row_batches.map(load, num_parallel_calls=2, deterministic=True)


def evaluation(split, preprocessing, batch_size=EVAL_BATCH_SIZE):
    """Every row of a split in order, as arguments of model.evaluate and predict: arrays
    as they are; rows on disk as a tf.data pipeline of prepared batches."""
    if not split.streamed:
        return {"x": split.x, "y": split.y, "batch_size": batch_size}
    import tensorflow as tf

    rows = tf.data.Dataset.range(len(split)).batch(batch_size)
    return {"x": prepared_batches(rows, split, preprocessing).prefetch(2)}


def validation_data(split, preprocessing, batch_size=EVAL_BATCH_SIZE):
    """model.fit's validation_data: (x, y) arrays, or a dataset of batches."""
    arguments = evaluation(split, preprocessing, batch_size)
    return (arguments["x"], arguments["y"]) if "y" in arguments else arguments["x"]


def predict_inputs(split, preprocessing, batch_size=EVAL_BATCH_SIZE):
    """model.predict's input: the arrays, or the prepared batches without targets."""
    arguments = evaluation(split, preprocessing, batch_size)
    return arguments["x"] if "y" in arguments else arguments["x"].map(lambda x, y: x)


def even_rows(split, multiple):
    """Drop the last len(split) % multiple rows (at most multiple - 1) when a batch is
    split over several devices, where an uneven batch fails: JAX cannot shard it, and
    Keras' MirroredStrategy step fails on unequal replica inputs (AddN)."""
    keep = len(split) - len(split) % multiple
    return split if keep == len(split) else split.take(np.arange(keep))
