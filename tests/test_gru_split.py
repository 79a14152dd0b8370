"""rnn_scripts/speedups/gru_split.py: Keras' GRU cell with its recurrent product split, not
sliced, gives Keras' own values, gradients and training to the bit, without the slices'
gradients; its self-check finds that too (the guard around it: test_speedups.py)."""

import collections
import contextlib
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnn_scripts.pipeline import Hooks
from rnn_scripts.speedups import gru_split
from rnn_scripts.training import compile_model

B, T, F, U = 4, 6, 5, 8  # batch, time steps, features, units


@contextlib.contextmanager
def split_cell(active):
    was_installed = gru_split.installed()
    gru_split.install() if active else gru_split.uninstall()
    try:
        yield
    finally:
        gru_split.install() if was_installed else gru_split.uninstall()


def gru_model(**options):
    keras.utils.set_random_seed(3)
    return keras.Sequential(
        [keras.Input((T, F)), keras.layers.GRU(U, return_sequences=True, **options),
         keras.layers.GRU(U, go_backwards=True, **options), keras.layers.Dense(3)]
    )  # fmt: skip


def outputs_and_gradients(model, x, active):
    """The model's training outputs and its loss gradients, with the dropout masks that
    the same seed-generator state gives (the state is put back after the call)."""
    generators = [
        layer.cell.seed_generator for layer in model.layers if hasattr(layer, "cell")
    ]
    states = [g.state.numpy() for g in generators]
    with split_cell(active), tf.GradientTape() as tape:
        y = model(x, training=True)
        loss = tf.reduce_sum(y * y)
    gradients = tape.gradient(loss, model.trainable_variables)
    for generator, state in zip(generators, states):
        generator.state.assign(state)
    return [y.numpy()] + [g.numpy() for g in gradients]


CELLS = {
    "default": {},
    "dropout": {"dropout": 0.3},
    "reset_before": {
        "reset_after": False
    },  # Keras' own call: nothing is sliced the same way
    "recurrent_dropout": {"recurrent_dropout": 0.3},  # implementation 1: Keras' own call
    "no_bias": {"use_bias": False},
}


@pytest.mark.parametrize("cell", CELLS)
def test_split_cell_gives_keras_outputs_and_gradients_to_the_bit(cell):
    model = gru_model(**CELLS[cell])
    x = np.random.default_rng(0).standard_normal((B, T, F)).astype("float32")
    keras_values = outputs_and_gradients(model, x, active=False)
    split_values = outputs_and_gradients(model, x, active=True)
    assert len(keras_values) == len(split_values) == 1 + len(model.trainable_variables)
    for ours, theirs in zip(split_values, keras_values):
        np.testing.assert_array_equal(ours, theirs)


def time_loop_op_types(model, x):
    """How often each op type occurs in the traced gradient's functions: the time loops'
    bodies and their gradients (an op there runs at every step)."""

    @tf.function
    def gradients(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x, training=True))
        return tape.gradient(loss, model.trainable_variables)

    graph = gradients.get_concrete_function(
        tf.TensorSpec((B, T, F))
    ).graph.as_graph_def()
    return collections.Counter(n.op for f in graph.library.function for n in f.node_def)


def test_split_cell_leaves_out_the_slice_gradients_that_cost_tensorflow_a_fifth():
    x = np.zeros((B, T, F), "float32")
    with split_cell(active=False):
        # 2 layers
        assert time_loop_op_types(gru_model(), x)["StridedSliceGrad"] == 3 * 2
    with split_cell(active=True):
        assert time_loop_op_types(gru_model(), x)["StridedSliceGrad"] == 0


def test_training_with_the_split_cell_ends_with_keras_weights():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((96, T, F)).astype("float32")
    y = rng.integers(0, 3, 96).astype("int32")
    options = types.SimpleNamespace(
        learning_rate=1e-2,
        lr_schedule="constant",
        optimizer="adam",
        clipnorm=None,
        epochs=2,
        steps_per_execution=4,
    )  # the flags compile_model reads
    weights = {}
    for active in (False, True):
        with split_cell(active):
            model = gru_model()
            compile_model(model, options, "logits", Hooks(), steps_per_epoch=6)
            model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
            weights[active] = model.get_weights()
    for ours, theirs in zip(weights[True], weights[False]):
        np.testing.assert_array_equal(ours, theirs)


def test_the_self_check_passes_on_keras_own_arithmetic_and_fails_on_another():
    with split_cell(active=True):
        assert gru_split.self_check() is None
        own_split = gru_split._split_call
        gru_split.uninstall()
        gru_split._split_call = lambda original: (
            lambda self, x, states, training=False: (lambda h, s: (h * 1.01, s))(
                *own_split(original)(self, x, states, training)
            )
        )
        try:
            gru_split.install()
            assert gru_split.self_check().startswith(
                "its outputs or gradients differ from Keras' by "
            )
        finally:
            gru_split.uninstall()
            gru_split._split_call = own_split


def test_at_inference_the_split_cell_applies_no_dropout_as_keras():
    x = np.random.default_rng(4).standard_normal((B, T, F)).astype("float32")
    found = {}
    for active in (False, True):
        with split_cell(active):
            found[active] = gru_model(dropout=0.5)(x, training=False).numpy()
    np.testing.assert_array_equal(found[True], found[False])
