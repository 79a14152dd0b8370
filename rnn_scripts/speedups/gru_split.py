"""Keras' GRU cell with its recurrent product split, not sliced (installed on
TensorFlow).

Keras 3.15's GRUCell takes each gate's share of h @ recurrent_kernel as a slice
(matrix_inner[:, :units], ...). TensorFlow's gradient of a slice (StridedSliceGrad)
writes a zero-filled copy of the whole product, and the three copies are then added
(their share of a training step: docs/performance.md). ops.split gives the same three
values, and its gradient is one concatenation, so values and gradients stay Keras' own
to the bit (tested). install() gives GRUCell that form where Keras' cell takes the
sliced path (reset_after=True, with biases, the default implementation 2); every other
cell runs Keras' call. The form copies the 3.15 cell's arithmetic: speedups.install()
applies it only to the Keras versions it was tested with, and after self_check() finds
Keras' own outputs and gradients."""

import functools

import keras
import numpy as np

NAME, BACKEND = "gru_split_cell", "tensorflow"
TESTED = {"keras": ("3.15.0", "3.16.0")}
_original = []  # Keras' GRUCell.call, while installed


def install():
    """Give GRU cells the split form; True if it is (now) active."""
    if not _original:
        from keras.src.layers.rnn.gru import GRUCell

        _original.append(GRUCell.call)
        GRUCell.call = _split_call(GRUCell.call)
    return True


def uninstall():
    """Put Keras' own call back (harmless if not installed)."""
    if _original:
        from keras.src.layers.rnn.gru import GRUCell

        GRUCell.call = _original.pop()


def installed():
    return bool(_original)


def self_check():
    """None if a tiny GRU gives Keras' own outputs and gradients with the split cell."""
    import tensorflow as tf
    from keras.src.layers.rnn.gru import GRUCell

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    # whatever the global policy
    layer = keras.layers.GRU(3, return_sequences=True, dtype="float32")
    layer.build(x.shape)
    layer.set_weights(
        [
            rng.standard_normal(w.shape).astype(np.float32) * 0.5
            for w in layer.get_weights()
        ]
    )

    def step():
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        return [y.numpy()] + [
            g.numpy() for g in tape.gradient(loss, layer.trainable_variables)
        ]

    split = step()
    patched, GRUCell.call = GRUCell.call, _original[0]
    try:
        own = step()
    finally:
        GRUCell.call = patched
    worst = max(float(np.abs(a - b).max()) for a, b in zip(split, own))
    return (
        None
        if worst <= 1e-6
        else f"its outputs or gradients differ from Keras' by {worst:.2g}"
    )


def _split_call(original):
    """GRUCell.call with ops.split where Keras slices; Keras' own call elsewhere."""

    @functools.wraps(original)
    def call(self, inputs, states, training=False):
        if not self.reset_after or not self.use_bias or self.implementation == 1:
            return original(self, inputs, states, training)
        ops, nested = keras.ops, keras.tree.is_nested(states)
        h_tm1 = states[0] if nested else states
        input_bias, recurrent_bias = (
            ops.squeeze(bias, axis=0) for bias in ops.split(self.bias, 2, axis=0)
        )
        if training and 0.0 < self.dropout < 1.0:
            inputs = inputs * self.get_dropout_mask(inputs)
        x_z, x_r, x_h = ops.split(
            ops.add(ops.matmul(inputs, self.kernel), input_bias), 3, axis=-1
        )
        inner = ops.matmul(h_tm1, self.recurrent_kernel) + recurrent_bias
        recurrent_z, recurrent_r, recurrent_h = ops.split(inner, 3, axis=-1)
        z = self.recurrent_activation(x_z + recurrent_z)
        r = self.recurrent_activation(x_r + recurrent_r)
        hh = self.activation(x_h + r * recurrent_h)
        h = z * h_tm1 + (1 - z) * hh
        return h, [h] if nested else h

    return call
