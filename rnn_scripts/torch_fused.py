"""Run Keras LSTM and GRU layers on torch's fused CPU kernels (torch._VF.lstm / gru).

Keras 3.15's torch backend uses the fused kernels only for CUDA inputs; on the CPU it
loops over time steps in Python, and training is markedly slower than native PyTorch
(LSTM about 1.5x). install() wraps keras.src.backend.lstm and .gru so that float32/64
CPU calls that Keras' cuDNN path would accept go to Keras' own _cudnn_lstm / _cudnn_gru
helpers, which work on the CPU too. Bidirectional layers benefit through their two
per-direction layers (Keras' fused bidirectional_* functions stay CUDA-only). All other
calls go to Keras unchanged. The wrappers rely on private Keras functions and
signatures, so install() only acts on the Keras versions it was tested with (3.15.x).
"""

import functools
import importlib
import inspect

import keras

TESTED_KERAS = "3.15."
_originals = {}  # name in keras.src.backend -> Keras' own function, while installed


def install():
    """Route eligible LSTM/GRU calls to the fused kernels; True if it is (now) active."""
    if keras.backend.backend() != "torch" or not keras.__version__.startswith(
        TESTED_KERAS
    ):
        return False
    if not _originals:
        from keras.src import backend

        for name, fused in (("lstm", _fused_lstm), ("gru", _fused_gru)):
            _originals[name] = getattr(backend, name)
            setattr(backend, name, _wrap(_originals[name], fused))
    return True


def uninstall():
    """Put Keras' own functions back (harmless if not installed)."""
    from keras.src import backend

    while _originals:
        name, original = _originals.popitem()
        setattr(backend, name, original)


def installed():
    """Whether install() is in effect."""
    return bool(_originals)


def _wrap(original, fused):
    signature = inspect.signature(original)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        call = bound.arguments
        if _eligible(call):
            return fused(call)
        return original(*args, **kwargs)

    return wrapper


def _eligible(call):
    # torch and keras.src.backend.torch are imported here, as they exist only with torch.
    import torch
    from keras.src import activations, ops
    from keras.src.backend.torch.core import convert_to_tensor

    compiling = getattr(torch.compiler, "is_compiling", lambda: False)()
    if (
        call["mask"] is not None
        or call["unroll"]
        or call["bias"] is None
        or not call.get("reset_after", True)  # torch's GRU is the reset_after=True one
        or not call.get("batch_first", True)
        # The activations Keras' cudnn_ok() accepts (it also demands CUDA, so not reused).
        or call["activation"] not in (activations.tanh, torch.tanh, ops.tanh)
        or call["recurrent_activation"]
        not in (activations.sigmoid, torch.sigmoid, ops.sigmoid)
        or torch.jit.is_tracing()
        or compiling
    ):
        return False
    # Not for mixed precision: in bfloat16 the kernel's results differ from Keras' loop
    # by up to ~1e-2 (float16 is untested). CUDA inputs already get the kernels in Keras.
    kernel = convert_to_tensor(call["kernel"])
    inputs = convert_to_tensor(call["inputs"])
    full_precision = kernel.dtype in (torch.float32, torch.float64)
    return full_precision and inputs.device.type == "cpu"


def _prepared(call, *state_names):
    """Tensors as Keras' lstm()/gru() prepare them: kernel dtype, time flipped if asked."""
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
