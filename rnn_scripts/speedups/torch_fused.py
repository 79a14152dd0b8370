"""Run Keras LSTM, GRU and SimpleRNN layers on torch's fused CPU kernels (torch._VF).

Keras 3.15's torch backend uses the fused kernels only for CUDA inputs; on the CPU it
loops over time steps in Python, and training runs at about half the speed
(docs/performance.md). install() wraps keras.src.backend.lstm and .gru so that float32/64
CPU calls that Keras' cuDNN path would accept go to Keras' own _cudnn_lstm / _cudnn_gru
helpers, which work on the CPU too; SimpleRNN (relu or tanh) goes to torch._VF.rnn_relu /
rnn_tanh, which Keras never uses. All other calls go to Keras unchanged. The wrappers
rely on private Keras functions and signatures: speedups.install() applies them only to
the Keras and torch versions they were tested with, and after self_check() finds Keras'
own results.
"""

import contextlib
import functools
import importlib
import inspect

import keras
import numpy as np

NAME, BACKEND = "torch_fused_kernels", "torch"
TESTED = {"keras": ("3.15.0", "3.16.0"), "torch": ("2.13.0", "2.14.0")}
_originals = {}  # (owner, name) -> Keras' own function, while installed


def install():
    """Route eligible LSTM/GRU/SimpleRNN calls to the fused kernels; True if they are
    (now) active."""
    if keras.backend.backend() != "torch":
        return False
    if not _originals:
        from keras.src import backend
        from keras.src.layers.rnn.simple_rnn import SimpleRNN

        for name, fused in (("lstm", _fused_lstm), ("gru", _fused_gru)):
            _originals[backend, name] = getattr(backend, name)
            setattr(backend, name, _wrap(_originals[backend, name], fused))
        # SimpleRNN has no backend function to wrap: its layer loops over the steps.
        _originals[SimpleRNN, "inner_loop"] = SimpleRNN.inner_loop
        SimpleRNN.inner_loop = _simple_rnn_loop(SimpleRNN.inner_loop)
    return True


def uninstall():
    """Put Keras' own functions back (harmless if not installed)."""
    while _originals:
        (owner, name), original = _originals.popitem()
        setattr(owner, name, original)


def installed():
    """Whether install() is in effect."""
    return bool(_originals)


@contextlib.contextmanager
def keras_own():
    """Keras' own functions inside the block, the fused ones again afterwards."""
    uninstall()
    try:
        yield
    finally:
        install()


def self_check():
    """None if, on a tiny input, every fused path gives Keras' own outputs and gradients
    (LSTM, GRU, SimpleRNN), else what differs."""
    layers = keras.layers
    checks = {
        "LSTM": lambda: layers.LSTM(3, return_sequences=True, dtype="float32"),
        "GRU": lambda: layers.GRU(3, return_sequences=True, dtype="float32"),
        "SimpleRNN": lambda: layers.SimpleRNN(
            3, activation="relu", return_sequences=True, dtype="float32"
        ),
    }
    for name, make in checks.items():
        fused = _layer_step(make)
        with keras_own():
            own = _layer_step(make)
        worst = max(float(np.abs(a - b).max()) for a, b in zip(fused, own))
        if worst > 1e-5:
            return f"its {name} differs from Keras' by {worst:.2g}"
    return None


def _layer_step(make):
    """A new layer's outputs and gradients on a fixed input, with fixed weights."""
    import torch

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    layer = make()
    layer.build(x.shape)
    layer.set_weights(
        [
            rng.standard_normal(w.shape).astype(np.float32) * 0.5
            for w in layer.get_weights()
        ]
    )
    y = layer(torch.from_numpy(x))
    gradients = torch.autograd.grad(
        (y * y).sum(), [v.value for v in layer.trainable_variables]
    )
    return [y.detach().numpy()] + [g.numpy() for g in gradients]


def _wrap(original, fused, eligible=None):
    signature = inspect.signature(original)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        call = bound.arguments
        if (eligible or _eligible)(call):
            return fused(call)
        return original(*args, **kwargs)

    return wrapper


def _eligible(call):
    # torch and keras.src.backend.torch are imported here, as they exist only with torch.
    import torch
    from keras.src import activations, ops
    from keras.src.backend.torch.core import convert_to_tensor

    if (
        call["mask"] is not None
        or call["unroll"]
        or call["bias"] is None
        or not call.get("reset_after", True)  # torch's GRU is the reset_after=True one
        or not call.get("batch_first", True)
        # The activations Keras' cudnn_ok() accepts (it also demands CUDA: not reused).
        or call["activation"] not in (activations.tanh, torch.tanh, ops.tanh)
        or call["recurrent_activation"]
        not in (activations.sigmoid, torch.sigmoid, ops.sigmoid)
        or torch.jit.is_tracing()
        or _compiling(torch)
    ):
        return False
    # Not for mixed precision: in bfloat16 the kernel's results differ from Keras' loop
    # by up to ~1e-2 (float16 is untested). CUDA inputs already get the kernels in Keras.
    kernel = convert_to_tensor(call["kernel"])
    inputs = convert_to_tensor(call["inputs"])
    return _full_precision(torch, kernel.dtype) and inputs.device.type == "cpu"


def _compiling(torch):
    return getattr(torch.compiler, "is_compiling", lambda: False)()


def _full_precision(torch, dtype):
    return dtype in (torch.float32, torch.float64)


def _prepared(call, *state_names):
    """Tensors as Keras' lstm()/gru() prepare them: kernel dtype, time flipped."""
    import torch
    from keras.src.backend.torch.core import convert_to_tensor

    kernel = convert_to_tensor(call["kernel"])
    inputs = convert_to_tensor(call["inputs"]).to(kernel.dtype)
    if call["go_backwards"]:
        inputs = torch.flip(inputs, dims=[1])  # outputs stay in this (reversed) order
    states = [convert_to_tensor(call[name]).to(kernel.dtype) for name in state_names]
    weights = [kernel, convert_to_tensor(call["recurrent_kernel"])]
    return inputs, states, weights + [convert_to_tensor(call["bias"])]


def _keras_torch_rnn():
    # The module, not the rnn() function that keras.src.backend.torch exports as "rnn".
    return importlib.import_module("keras.src.backend.torch.rnn")


def _fused_lstm(call):
    inputs, (h, c), weights = _prepared(call, "initial_state_h", "initial_state_c")
    return _keras_torch_rnn()._cudnn_lstm(
        inputs, h, c, *weights, call["return_sequences"], device=inputs.device
    )


def _fused_gru(call):
    inputs, (h,), weights = _prepared(call, "initial_state")
    return _keras_torch_rnn()._cudnn_gru(
        inputs, h, *weights, call["return_sequences"], device=inputs.device
    )


def _simple_rnn_loop(original):
    """SimpleRNN.inner_loop on torch._VF.rnn_relu / rnn_tanh where that is exact."""

    @functools.wraps(original)
    def inner_loop(self, sequences, initial_state, mask, training=False):
        import torch
        from keras.src import activations
        from keras.src.backend.torch.core import convert_to_tensor

        cell, inputs = self.cell, convert_to_tensor(sequences)
        kernel = {
            activations.relu: torch._VF.rnn_relu,
            activations.tanh: torch._VF.rnn_tanh,
        }.get(cell.activation)
        if (
            kernel is None
            or mask is not None
            or self.unroll
            or not cell.use_bias
            or (training and (cell.dropout or cell.recurrent_dropout))
            or inputs.device.type != "cpu"
            or not _full_precision(torch, inputs.dtype)
            or torch.jit.is_tracing()
            or _compiling(torch)
        ):
            return original(self, sequences, initial_state, mask, training)
        state = (
            initial_state[0]
            if isinstance(initial_state, (list, tuple))
            else initial_state
        )
        if self.go_backwards:
            # outputs stay in this order, as Keras'
            inputs = torch.flip(inputs, dims=[1])
        weights = [
            convert_to_tensor(v) for v in (cell.kernel, cell.recurrent_kernel, cell.bias)
        ]
        params = [weights[0].T, weights[1].T, weights[2], torch.zeros_like(weights[2])]
        outputs, last_state = kernel(
            inputs,
            convert_to_tensor(state).unsqueeze(0),
            params,
            True,
            1,
            0.0,
            torch.is_grad_enabled(),
            False,
            True,
        )  # biases, layers, dropout, training, bidirectional, batch_first; fmt: skip
        last = outputs[:, -1]
        return (
            last,
            outputs if self.return_sequences else last.unsqueeze(1),
            [last_state[0]],
        )

    return inner_loop
