"""Run Keras LSTM, GRU and SimpleRNN layers, and the Adam update, on torch's fused CPU
kernels (torch._VF, torch._fused_adam_).

Keras 3.15's torch backend uses the fused kernels only for CUDA inputs; on the CPU it
loops over time steps in Python, and training is markedly slower than native PyTorch
(LSTM about 1.5x). install() wraps keras.src.backend.lstm and .gru so that float32/64
CPU calls that Keras' cuDNN path would accept go to Keras' own _cudnn_lstm / _cudnn_gru
helpers, which work on the CPU too. A Bidirectional LSTM runs both directions in one
call, as Keras does on CUDA (not when its forward layer runs backwards, which Keras'
fused call ignores); a Bidirectional GRU runs its two layers. LSTM cells built while
installed store their kernels transposed in memory (Keras' shape and values, torch's
strides): the transpose torch wants is then the stored tensor itself, with no copy of
each kernel forward and of its gradient backward. SimpleRNN (relu or tanh) goes to
torch._VF.rnn_relu / rnn_tanh, which Keras never uses. Keras' Adam update on torch makes
a dozen _foreach passes with temporaries (about 2 ms of a 60 ms LSTM step on the 2-core
CPU of docs/performance.md); torch._fused_adam_ does the same arithmetic in one pass
(0.4 ms). All other calls go to Keras unchanged. The wrappers rely on private Keras
functions and signatures, so install() only acts on the Keras versions it was tested
with (3.15.x).
"""

import functools
import importlib
import inspect
import math

import keras

TESTED_KERAS = "3.15."
_originals = {}  # (owner, name) -> Keras' own function, while installed


def install(adam=True, torch_layout=True, bidirectional=True):
    """Route eligible LSTM/GRU/SimpleRNN calls (with adam, Adam updates; with
    bidirectional, both directions of a Bidirectional LSTM in one call) to the fused
    kernels, and with torch_layout store new LSTM kernels transposed; True if it is (now)
    active."""
    if keras.backend.backend() != "torch" or not keras.__version__.startswith(
        TESTED_KERAS
    ):
        return False
    if not _originals:
        from keras.src import backend
        from keras.src.backend.torch.optimizers.torch_adam import Adam
        from keras.src.layers.rnn.bidirectional import Bidirectional
        from keras.src.layers.rnn.lstm import LSTMCell
        from keras.src.layers.rnn.simple_rnn import SimpleRNN

        for name, fused in (("lstm", _fused_lstm), ("gru", _fused_gru)):
            _originals[backend, name] = getattr(backend, name)
            setattr(backend, name, _wrap(_originals[backend, name], fused))
        if bidirectional:
            _originals[backend, "bidirectional_lstm"] = backend.bidirectional_lstm
            backend.bidirectional_lstm = _wrap(
                backend.bidirectional_lstm,
                _fused_bidirectional_lstm,
                _bidirectional_eligible,
            )
            check = Bidirectional._can_attempt_fused_lstm
            _originals[Bidirectional, "_can_attempt_fused_lstm"] = check
            Bidirectional._can_attempt_fused_lstm = _only_forward_then_backward(check)
        if torch_layout:
            _originals[LSTMCell, "build"] = LSTMCell.build
            LSTMCell.build = _kernels_in_torch_layout(LSTMCell.build)
        # SimpleRNN has no backend function to wrap: its layer loops over the steps.
        _originals[SimpleRNN, "inner_loop"] = SimpleRNN.inner_loop
        SimpleRNN.inner_loop = _simple_rnn_loop(SimpleRNN.inner_loop)
        if adam:
            _originals[Adam, "_parallel_update_step"] = Adam._parallel_update_step
            Adam._parallel_update_step = _fused_adam_step(Adam._parallel_update_step)
    return True


def uninstall():
    """Put Keras' own functions back (harmless if not installed)."""
    while _originals:
        (owner, name), original = _originals.popitem()
        setattr(owner, name, original)


def installed():
    """Whether install() is in effect."""
    return bool(_originals)


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
        # The activations Keras' cudnn_ok() accepts (it also demands CUDA, so not reused).
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


def _bidirectional_eligible(call):
    """_eligible for Keras' bidirectional_lstm(), which names each direction's weights."""
    both_biases = call["fwd_bias"] is not None and call["bwd_bias"] is not None
    bias = call["fwd_bias"] if both_biases else None
    return _eligible({**call, "bias": bias, "kernel": call["fwd_kernel"]})


def _compiling(torch):
    return getattr(torch.compiler, "is_compiling", lambda: False)()


def _full_precision(torch, dtype):
    return dtype in (torch.float32, torch.float64)


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


def _fused_bidirectional_lstm(call):
    """Both directions in one torch._VF.lstm call, returned as Keras' CUDA one returns."""
    import torch
    from keras.src.backend.torch.core import convert_to_tensor

    prepare = _keras_torch_rnn().prepare_lstm_params
    dtype = convert_to_tensor(call["fwd_kernel"]).dtype
    inputs = convert_to_tensor(call["inputs"]).to(dtype)
    weights, states = [], {"h": [], "c": []}
    for side in ("fwd", "bwd"):
        names = ("kernel", "recurrent_kernel", "bias")
        tensors = [convert_to_tensor(call[f"{side}_{name}"]) for name in names]
        weights += prepare(*tensors, inputs.device)
        for state in states:
            state_name = f"{side}_initial_state_{state}"
            states[state].append(convert_to_tensor(call[state_name]))
    h, c = (torch.stack(states[state]).to(dtype) for state in "hc")
    outputs, h_n, c_n = torch._VF.lstm(
        inputs, (h, c), weights, True, 1, 0.0, torch.is_grad_enabled(), True, True
    )  # biases, layers, dropout, training, bidirectional, batch_first
    forward, backward = outputs.split(h.shape[-1], dim=-1)
    lasts = (forward[:, -1], backward[:, 0])  # the backward direction ends at step 0
    if call["return_sequences"]:
        sequences = (forward, backward)
    else:
        sequences = tuple(last.unsqueeze(1) for last in lasts)
    return tuple((lasts[i], sequences[i], [h_n[i], c_n[i]]) for i in range(2))


def _only_forward_then_backward(check):
    """Bidirectional._can_attempt_fused_lstm, refusing a forward layer that runs
    backwards (with an explicit backward_layer): the fused call always reads the forward
    direction first, and Keras does not check go_backwards."""

    @functools.wraps(check)
    def can_attempt(self, *args, **kwargs):
        return not self.forward_layer.go_backwards and check(self, *args, **kwargs)

    return can_attempt


def _kernels_in_torch_layout(build):
    """LSTMCell.build, then its CPU float32/64 kernels stored as torch's kernel reads them.

    Keras' _cudnn_lstm passes kernel.T.contiguous() to torch: with the storage
    transposed, that is the stored tensor, and the gradient arrives in the same layout.
    The values, the shape and every other use of the variable are unchanged."""

    @functools.wraps(build)
    def build_then_relayout(self, input_shape):
        import torch

        build(self, input_shape)
        for variable in (self.kernel, self.recurrent_kernel):
            value = variable._value  # None until initialized (in a stateless scope)
            if (
                value is not None
                and value.device.type == "cpu"
                and _full_precision(torch, value.dtype)
            ):
                _store_transposed(value)

    return build_then_relayout


def _simple_rnn_loop(original):
    """SimpleRNN.inner_loop on torch._VF.rnn_relu / rnn_tanh where that is exact."""

    @functools.wraps(original)
    def inner_loop(self, sequences, initial_state, mask, training=False):
        import torch
        from keras.src import activations
        from keras.src.backend.torch.core import convert_to_tensor

        cell, inputs = self.cell, convert_to_tensor(sequences)
        kernel = {activations.relu: torch._VF.rnn_relu, activations.tanh: torch._VF.rnn_tanh}.get(cell.activation)
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
        state = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
        if self.go_backwards:
            inputs = torch.flip(inputs, dims=[1])  # outputs stay in this order, as Keras'
        weights = [convert_to_tensor(v) for v in (cell.kernel, cell.recurrent_kernel, cell.bias)]
        params = [weights[0].T, weights[1].T, weights[2], torch.zeros_like(weights[2])]
        outputs, last_state = kernel(
            inputs, convert_to_tensor(state).unsqueeze(0), params,
            True, 1, 0.0, torch.is_grad_enabled(), False, True,
        )  # biases, layers, dropout, training, bidirectional, batch_first; fmt: skip
        last = outputs[:, -1]
        return last, outputs if self.return_sequences else last.unsqueeze(1), [last_state[0]]

    return inner_loop


def _fused_adam_step(original):
    """Adam._parallel_update_step on torch._fused_adam_ for CPU float32/64 weights."""

    @functools.wraps(original)
    def update_step(self, grads, variables, learning_rate):
        import torch

        params = [v.value for v in variables]
        dtype = params[0].dtype
        if (
            self.amsgrad
            or not _full_precision(torch, dtype)
            or any(p.device.type != "cpu" or p.dtype != dtype for p in params)
            or any(g.dtype != dtype for g in grads)
            or _compiling(torch)
        ):
            return original(self, grads, variables, learning_rate)
        slots = [self._get_variable_index(v) for v in variables]
        step = float(self.iterations.value.item()) + 1
        # Keras adds epsilon to sqrt(v), torch to sqrt(v / (1 - beta_2**step)): the same
        # update when torch's epsilon is Keras' over sqrt(1 - beta_2**step).
        epsilon = self.epsilon / math.sqrt(1 - self.beta_2**step)
        momentums = [self._momentums[i].value for i in slots]
        velocities = [self._velocities[i].value for i in slots]
        groups = zip(params, grads, momentums, velocities)
        groups = [_contiguous_views(*group) for group in groups]
        params, grads, momentums, velocities = (list(tensors) for tensors in zip(*groups))
        torch._fused_adam_(
            params,
            grads,
            momentums,
            velocities,
            [],
            [torch.tensor(step)] * len(params),
            lr=float(learning_rate),
            beta1=float(self.beta_1),
            beta2=float(self.beta_2),
            weight_decay=0.0,  # Keras applies its weight decay before this update
            eps=epsilon,
            amsgrad=False,
            maximize=False,
        )

    return update_step


def _contiguous_views(weight, gradient, *slots):
    """The weight, its gradient and Adam slots, transposed where the weight is a kernel
    stored transposed (see _kernels_in_torch_layout): torch's fused Adam copies
    non-contiguous tensors in and out. The slots take the weight's layout, once."""
    if weight.dim() != 2 or weight.is_contiguous() or not weight.T.is_contiguous():
        return (weight, gradient, *slots)
    for slot in slots:
        if slot.stride() != weight.stride():
            _store_transposed(slot)
    return tuple(tensor.T for tensor in (weight, gradient, *slots))


def _store_transposed(tensor):
    """Keep tensor's shape and values, with its memory laid out as its transpose's."""
    tensor.data = tensor.data.T.contiguous().T
