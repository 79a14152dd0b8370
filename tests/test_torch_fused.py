"""rnn_scripts/speedups/torch_fused.py gives the same outputs, gradients and training as Keras' own path.

Keras' backend is fixed at its first import, and this pytest process has Keras on
TensorFlow, so the torch checks run in one subprocess: this file run as a script with
KERAS_BACKEND=torch, which prints its measurements as JSON for the tests to assert on.
The fused kernels are observed through a counting spy on torch._VF.lstm / torch._VF.gru
(and torch._VF.rnn_relu / rnn_tanh for SimpleRNN).
"""

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("torch") is None:
    pytest.skip(
        "torch is not installed (pip install -r requirements-torch.txt)",
        allow_module_level=True,
    )

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-5  # float32, max abs difference of outputs and gradients
TRAINING_TOLERANCE = 1e-4  # max abs difference of the weights after training
B, T, F, U = 4, 6, 5, 8  # batch, time steps, features, units


def _sequence_model(make_layers, padded=False):
    """Build (model, inputs): the layers make_layers(keras.layers) returns, in a chain,
    fed float32 (B, T, F); padded zeroes the last two steps of half the batch."""

    def build(keras, rng):
        x = keras.Input((T, F))
        y = x
        for layer in make_layers(keras.layers):
            y = layer(y)
        data = rng.standard_normal((B, T, F)).astype("float32")
        if padded:
            data[: B // 2, -2:] = 0.0
        return keras.Model(x, y), [data]

    return build


def _initial_state_model(make_layer, n_states):
    def build(keras, rng):
        x = keras.Input((T, F))
        states = [keras.Input((U,)) for _ in range(n_states)]
        model = keras.Model(
            [x, *states], make_layer(keras.layers)(x, initial_state=states)
        )
        data = [rng.standard_normal((B, T, F)).astype("float32")]
        data += [rng.standard_normal((B, U)).astype("float32") for _ in states]
        return model, data

    return build


def _embedding_model(keras, rng):
    x = keras.Input((T,), dtype="int32")
    y = keras.layers.Embedding(10, F, mask_zero=True)(x)
    tokens = rng.integers(1, 10, size=(B, T)).astype("int32")
    tokens[: B // 2, -2:] = 0
    return keras.Model(x, keras.layers.LSTM(U)(y)), [tokens]


FUSED_CASES = {
    "lstm_sequences": _sequence_model(lambda L: [L.LSTM(U, return_sequences=True)]),
    "lstm_last": _sequence_model(lambda L: [L.LSTM(U)]),
    "lstm_backwards_sequences": _sequence_model(
        lambda L: [L.LSTM(U, return_sequences=True, go_backwards=True)]
    ),
    "lstm_backwards_last": _sequence_model(lambda L: [L.LSTM(U, go_backwards=True)]),
    "lstm_return_state": _sequence_model(
        lambda L: [L.LSTM(U, return_sequences=True, return_state=True)]
    ),
    "gru_sequences": _sequence_model(lambda L: [L.GRU(U, return_sequences=True)]),
    "gru_last": _sequence_model(lambda L: [L.GRU(U)]),
    "gru_backwards_sequences": _sequence_model(
        lambda L: [L.GRU(U, return_sequences=True, go_backwards=True)]
    ),
    "gru_backwards_last": _sequence_model(lambda L: [L.GRU(U, go_backwards=True)]),
    "gru_return_state": _sequence_model(lambda L: [L.GRU(U, return_state=True)]),
    "stacked_lstm_gru_dense": _sequence_model(
        lambda L: [
            L.LSTM(U, return_sequences=True),
            L.GRU(U, return_sequences=True, go_backwards=True),
            L.LSTM(U),
            L.Dense(3),
        ]
    ),
    "bidirectional_lstm_concat": _sequence_model(
        lambda L: [L.Bidirectional(L.LSTM(U, return_sequences=True))]
    ),
    "bidirectional_lstm_sum_last": _sequence_model(
        lambda L: [L.Bidirectional(L.LSTM(U), merge_mode="sum")]
    ),
    "bidirectional_lstm_no_merge": _sequence_model(
        lambda L: [L.Bidirectional(L.LSTM(U, return_sequences=True), merge_mode=None)]
    ),
    "bidirectional_lstm_stacked": _sequence_model(
        lambda L: [
            L.Bidirectional(L.LSTM(U, return_sequences=True)),
            L.Bidirectional(L.LSTM(U)),
            L.Dense(3),
        ]
    ),
    "bidirectional_lstm_reversed_pair": _sequence_model(
        lambda L: [
            L.Bidirectional(
                L.LSTM(U, return_sequences=True, go_backwards=True),
                backward_layer=L.LSTM(U, return_sequences=True),
            )
        ]
    ),
    "bidirectional_gru_concat": _sequence_model(
        lambda L: [L.Bidirectional(L.GRU(U, return_sequences=True))]
    ),
    "bidirectional_gru_ave_last": _sequence_model(
        lambda L: [L.Bidirectional(L.GRU(U), merge_mode="ave")]
    ),
    "lstm_float64": _sequence_model(lambda L: [L.LSTM(U, dtype="float64")]),
    "lstm_initial_state": _initial_state_model(
        lambda L: L.LSTM(U, return_sequences=True), 2
    ),
    "gru_initial_state": _initial_state_model(lambda L: L.GRU(U, go_backwards=True), 1),
    "bidirectional_lstm_initial_state": _initial_state_model(
        lambda L: L.Bidirectional(L.LSTM(U, return_sequences=True)), 4
    ),
    "simplernn_relu_sequences": _sequence_model(
        lambda L: [L.SimpleRNN(U, activation="relu", return_sequences=True)]
    ),
    "simplernn_tanh_last": _sequence_model(lambda L: [L.SimpleRNN(U)]),
    "simplernn_backwards_sequences": _sequence_model(
        lambda L: [L.SimpleRNN(U, return_sequences=True, go_backwards=True)]
    ),
    "simplernn_return_state": _sequence_model(
        lambda L: [L.SimpleRNN(U, activation="relu", return_state=True)]
    ),
    "simplernn_initial_state": _initial_state_model(
        lambda L: L.SimpleRNN(U, activation="relu", return_sequences=True), 1
    ),
    "simplernn_stacked_bidirectional": _sequence_model(
        lambda L: [
            L.Bidirectional(L.SimpleRNN(U, return_sequences=True)),
            L.SimpleRNN(U),
        ]
    ),
}

KERAS_PATH_CASES = {
    "lstm_masking": _sequence_model(
        lambda L: [L.Masking(0.0), L.LSTM(U, return_sequences=True)], padded=True
    ),
    "gru_masking": _sequence_model(lambda L: [L.Masking(0.0), L.GRU(U)], padded=True),
    "bidirectional_lstm_masking": _sequence_model(
        lambda L: [L.Masking(0.0), L.Bidirectional(L.LSTM(U))], padded=True
    ),
    "lstm_embedding_mask_zero": _embedding_model,
    "lstm_relu": _sequence_model(lambda L: [L.LSTM(U, activation="relu")]),
    "gru_relu": _sequence_model(lambda L: [L.GRU(U, activation="relu")]),
    "lstm_hard_sigmoid_gates": _sequence_model(
        lambda L: [L.LSTM(U, recurrent_activation="hard_sigmoid")]
    ),
    "lstm_unroll": _sequence_model(lambda L: [L.LSTM(U, unroll=True)]),
    "gru_unroll": _sequence_model(lambda L: [L.GRU(U, unroll=True)]),
    "gru_reset_after_false": _sequence_model(lambda L: [L.GRU(U, reset_after=False)]),
    "lstm_no_bias": _sequence_model(lambda L: [L.LSTM(U, use_bias=False)]),
    "gru_no_bias": _sequence_model(lambda L: [L.GRU(U, use_bias=False)]),
    "lstm_mixed_bfloat16": _sequence_model(
        lambda L: [L.LSTM(U, dtype="mixed_bfloat16")]
    ),
    "gru_mixed_bfloat16": _sequence_model(lambda L: [L.GRU(U, dtype="mixed_bfloat16")]),
    "lstm_while_torch_compiles": _sequence_model(lambda L: [L.LSTM(U)]),
    "gru_while_torch_jit_traces": _sequence_model(lambda L: [L.GRU(U)]),
    "simplernn_masking": _sequence_model(
        lambda L: [L.Masking(0.0), L.SimpleRNN(U, activation="relu")], padded=True
    ),
    "simplernn_sigmoid": _sequence_model(
        lambda L: [L.SimpleRNN(U, activation="sigmoid")]
    ),
    "simplernn_unroll": _sequence_model(lambda L: [L.SimpleRNN(U, unroll=True)]),
    "simplernn_no_bias": _sequence_model(lambda L: [L.SimpleRNN(U, use_bias=False)]),
    "simplernn_mixed_bfloat16": _sequence_model(
        lambda L: [L.SimpleRNN(U, dtype="mixed_bfloat16")]
    ),
    "simplernn_while_torch_compiles": _sequence_model(lambda L: [L.SimpleRNN(U)]),
}
# Cases run with this torch function (module, name) answering True, as under
# torch.compile (e.g. jit_compile=True) or torch.jit.trace.
PRETENDING = {
    "lstm_while_torch_compiles": ("compiler", "is_compiling"),
    "gru_while_torch_jit_traces": ("jit", "is_tracing"),
    "simplernn_while_torch_compiles": ("compiler", "is_compiling"),
}


# ---------------------------------------------------------------- the torch subprocess


def _torch_checks():
    """Runs with KERAS_BACKEND=torch; returns everything the tests assert on."""
    import keras
    import numpy as np
    import torch
    from keras.src import backend

    from rnn_scripts.speedups import torch_fused

    assert keras.backend.backend() == "torch"
    from keras.src.layers.rnn.simple_rnn import SimpleRNN

    fused_calls = _spy_on_fused_kernels(torch)
    keras_own = (backend.lstm, backend.gru, SimpleRNN.inner_loop)

    def keras_untouched():
        current = (backend.lstm, backend.gru, SimpleRNN.inner_loop)
        return all(mine is theirs for mine, theirs in zip(current, keras_own))

    def max_difference(xs, ys):
        assert len(xs) == len(ys)
        return max(float(np.abs(x - y).max()) for x, y in zip(xs, ys))

    def outputs_and_gradients(model, data):
        tensors = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in data]
        outputs = keras.tree.flatten(model(tensors if len(tensors) > 1 else tensors[0]))
        # A fixed random weighting, so that gradients also see the order of time steps.
        weights = torch.Generator().manual_seed(0)
        probe = sum(
            (o.float() * torch.randn(o.shape, generator=weights)).sum() for o in outputs
        )
        wrt = [t for t in tensors if t.requires_grad]
        wrt += [v.value for v in model.trainable_variables]
        grads = torch.autograd.grad(probe, wrt, allow_unused=True)
        grads = [torch.zeros_like(w) if g is None else g for g, w in zip(grads, wrt)]
        return [o.detach().float().numpy() for o in outputs], [
            g.float().numpy() for g in grads
        ]

    def compare(name, build):
        keras.utils.set_random_seed(1)
        model, data = build(keras, np.random.default_rng(1))
        with _pretending(torch, PRETENDING.get(name)):
            fused_calls[0] = 0
            reference = outputs_and_gradients(model, data)
            calls_off = fused_calls[0]
            assert torch_fused.install()
            adapted = outputs_and_gradients(model, data)
        return {
            "fused_calls_off": calls_off,
            "fused_calls_on": fused_calls[0] - calls_off,
            "output_difference": max_difference(adapted[0], reference[0]),
            "gradient_difference": max_difference(adapted[1], reference[1]),
        }

    def without_and_with_adapter(train):
        """train() on Keras' own path, then with the adapter: (without, with, fused calls)."""
        without = train()
        fused_calls[0] = 0
        assert torch_fused.install()
        return without, train(), fused_calls[0]

    def install_twice():
        first, wrapped = torch_fused.install(), backend.lstm
        second, still_wrapped = torch_fused.install(), backend.lstm is wrapped
        torch_fused.uninstall()
        torch_fused.uninstall()
        return {
            "returns": [first, second],
            "wrapped": wrapped is not keras_own[0],
            "second_install_kept_the_wrapper": still_wrapped,
            "uninstall_restored_keras": keras_untouched(),
            "installed_after_uninstall": torch_fused.installed(),
        }

    def installed_under(change):
        """speedups.install under `change` (a faked version, a kernel that computes
        otherwise): what it reports, and whether Keras' own code stayed in place."""
        import types

        from rnn_scripts import speedups

        torch_fused.uninstall()
        undo = change()
        try:
            report = speedups.install(types.SimpleNamespace(fused_kernels="auto"))
            fused_calls[0] = 0
            model, data = FUSED_CASES["lstm_last"](keras, np.random.default_rng(1))
            outputs_and_gradients(model, data)
        finally:
            undo()
            torch_fused.uninstall()
        return {
            "report": report,
            "keras_untouched": keras_untouched(),
            "fused_calls": fused_calls[0],
        }

    def faked(owner, name, value):
        def change():
            real = getattr(owner, name)
            setattr(owner, name, value)
            return lambda: setattr(owner, name, real)

        return change

    real_fused_lstm = torch_fused._fused_lstm

    def doubled(call):
        last, sequences, states = real_fused_lstm(call)
        return last * 2, sequences * 2, states

    def untested_version():
        from rnn_scripts import speedups

        def torch_version(package):
            return "2.14.0" if package == "torch" else keras.__version__

        return {
            "keras": installed_under(faked(keras, "__version__", "3.16.0")),
            "torch": installed_under(
                faked(speedups, "installed_version", torch_version)
            ),
            "broken_kernel": installed_under(faked(torch_fused, "_fused_lstm", doubled)),
        }

    def training():
        """Train one model twice from the same weights and data, adapter off then on."""
        keras.utils.set_random_seed(2)
        L = keras.layers
        model = keras.Sequential(
            [
                keras.Input((T, F)),
                L.Bidirectional(L.LSTM(U, return_sequences=True)),
                L.GRU(U, return_sequences=True, go_backwards=True),
                L.SimpleRNN(U, activation="relu", return_sequences=True),
                L.LSTM(U),
                L.Dense(3),
            ]
        )
        rng = np.random.default_rng(2)
        x = rng.standard_normal((64, T, F)).astype("float32")
        y = rng.integers(0, 3, size=64)
        initial_weights = model.get_weights()

        def train():
            model.set_weights(initial_weights)
            model.compile(
                optimizer=keras.optimizers.Adam(1e-2),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                steps_per_execution=1,
            )
            model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
            return model.get_weights()

        without, with_adapter, calls = without_and_with_adapter(train)
        return {
            "fused_calls": calls,
            "weight_difference": max_difference(with_adapter, without),
            "weights_moved": max_difference(without, initial_weights),
        }

    def guarded(check, *args):
        """The check's result, or the error it raised (so that only its tests fail)."""
        torch_fused.uninstall()
        try:
            return check(*args)
        except Exception as error:
            return {"error": f"{type(error).__name__}: {error}"}
        finally:
            torch_fused.uninstall()

    def simple_rnn_dropout():
        """SimpleRNN with dropout: Keras' own loop in training (the fused kernel has no
        dropout), the fused kernel at inference (where Keras' dropout does nothing)."""
        torch_fused.install()
        x = keras.Input((T, F))
        layer = keras.layers.SimpleRNN(U, activation="relu", dropout=0.5)
        data = torch.tensor(
            np.random.default_rng(2).standard_normal((B, T, F)).astype("float32")
        )
        found = {}
        for name, training in (("training", True), ("inference", False)):
            fused_calls[0] = 0
            keras.Model(x, layer(x, training=training))(data)
            found[name] = fused_calls[0]
        return found

    cases = {**FUSED_CASES, **KERAS_PATH_CASES}
    return {
        "cases": {name: guarded(compare, name, build) for name, build in cases.items()},
        "install_twice": guarded(install_twice),
        "simple_rnn_dropout": guarded(simple_rnn_dropout),
        "untested_version": guarded(untested_version),
        "training": guarded(training),
    }


def _spy_on_fused_kernels(torch):
    """Count calls of torch's fused kernels; returns the one-item counter."""
    calls = [0]
    targets = [(torch._VF, name) for name in ("lstm", "gru", "rnn_relu", "rnn_tanh")]
    for owner, name in targets:

        def spy(*args, _kernel=getattr(owner, name), **kwargs):  # noqa: B008
            calls[0] += 1
            return _kernel(*args, **kwargs)

        setattr(owner, name, spy)
    return calls


@contextlib.contextmanager
def _pretending(torch, target):
    """Make torch.<module>.<function>() answer True for a while (target: the pair)."""
    if target is None:
        yield
        return
    module = getattr(torch, target[0])
    real = getattr(module, target[1])
    setattr(module, target[1], lambda: True)
    try:
        yield
    finally:
        setattr(module, target[1], real)


def _run_self(backend, *args):
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, __file__, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")]
    assert result.returncode == 0 and lines, (
        result.stdout[-3000:] + result.stderr[-3000:]
    )
    return json.loads(lines[-1][len("RESULT ") :])


# --------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def torch_results():
    return _run_self("torch")


@pytest.mark.parametrize("case", FUSED_CASES)
def test_fused_kernel_gives_keras_outputs_and_gradients(torch_results, case):
    result = torch_results["cases"][case]
    assert "error" not in result, result
    assert result["fused_calls_off"] == 0, result  # Keras alone: its Python loop
    assert result["fused_calls_on"] > 0, result
    assert result["output_difference"] <= TOLERANCE, result
    assert result["gradient_difference"] <= TOLERANCE, result


@pytest.mark.parametrize("case", KERAS_PATH_CASES)
def test_adapter_stays_off_where_it_would_not_be_exact(torch_results, case):
    result = torch_results["cases"][case]
    assert "error" not in result, result
    assert result["fused_calls_on"] == 0, result
    assert result["output_difference"] == 0.0, result
    assert result["gradient_difference"] == 0.0, result


def test_simplernn_dropout_trains_on_keras_loop_and_infers_on_the_fused_kernel(
    torch_results,
):
    assert torch_results["simple_rnn_dropout"] == {"training": 0, "inference": 1}


def test_install_twice_is_harmless_and_uninstall_restores_keras(torch_results):
    assert torch_results["install_twice"] == {
        "returns": [True, True],
        "wrapped": True,
        "second_install_kept_the_wrapper": True,
        "uninstall_restored_keras": True,
        "installed_after_uninstall": False,
    }


def test_the_guard_keeps_the_kernels_off_for_untested_versions_and_a_failed_self_check(
    torch_results,
):
    found = torch_results["untested_version"]
    assert found["keras"]["report"] == {
        "torch_fused_kernels": "off: keras 3.16.0 is not a version it was tested with (3.15.0 up to 3.16.0)"
    }
    assert found["torch"]["report"] == {
        "torch_fused_kernels": "off: torch 2.14.0 is not a version it was tested with (2.13.0 up to 2.14.0)"
    }
    assert found["broken_kernel"]["report"]["torch_fused_kernels"].startswith(
        "off: its LSTM differs from Keras' by "
    )
    for case in found.values():
        assert case["keras_untouched"] is True and case["fused_calls"] == 0


def test_install_refuses_other_backends():
    assert _run_self("numpy", "--other-backend") == {
        "install_returns": False,
        "keras_untouched": True,
    }


def test_training_with_adapter_ends_at_the_same_weights(torch_results):
    result = torch_results["training"]
    assert "error" not in result, result
    assert result["fused_calls"] > 0, result
    assert result["weights_moved"] > 100 * TRAINING_TOLERANCE, result
    assert result["weight_difference"] <= TRAINING_TOLERANCE, result


def _other_backend_check():
    from keras.src import backend

    from rnn_scripts.speedups import torch_fused

    own = backend.lstm, backend.gru
    return {
        "install_returns": torch_fused.install(),
        "keras_untouched": (backend.lstm, backend.gru) == own,
    }


if __name__ == "__main__":
    checks = _other_backend_check if "--other-backend" in sys.argv else _torch_checks
    print("RESULT " + json.dumps(checks()))
