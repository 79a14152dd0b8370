"""Every script runs unchanged on the JAX and PyTorch backends (CPU), chosen by --backend, with
the steering flags; the same model learns the same data on each backend, and the backends
agree on what it predicts.

TensorFlow's runs go through this test process (helpers.run_here); JAX's and torch's each
run in one process of their own (helpers.run_in_one_process), skipped where the backend's
package is not installed (pip install -r requirements-jax.txt / requirements-torch.txt).
"""

import numpy as np
import pytest

from files import separable_sequences
from helpers import (
    SCRIPTS,
    explain,
    importable,
    predict_here,
    read_metrics,
    run_here,
    run_in_one_process,
    standardised,
)

TINY = ("--smoke", "--limit", "150", "--units", "16")
ONE_LAYER = ("--num-layers", "1")
IMDB_TINY = ("--vocab-size", "2000", "--max-length", "30")
# Each script also tries some of the steering flags, so that every flag runs on every backend.
# The GRU learns your own sequences (the same data and seed on every backend): the runs
# must agree on what it predicts.
STEERING = {
    "train_simplernn.py": [*TINY, *ONE_LAYER, "--optimizer", "sgd"],
    "train_gru.py": [
        *("--epochs", "3", "--units", "8", *ONE_LAYER, "--learning-rate", "0.01"),
        *("--lr-schedule", "plateau", "--optimizer", "rmsprop"),
    ],
    "train_lstm.py": [
        *TINY,
        *ONE_LAYER,
        *("--lr-schedule", "cosine", "--clipnorm", "1.0", "--early-stopping", "1"),
        *("--epochs", "2", "--tensorboard"),
    ],
    "train_bilstm.py": [*TINY, *ONE_LAYER, "--mixed-precision", "bfloat16"],
    "train_imdb_bilstm.py": [*TINY, "--deterministic", *IMDB_TINY],
}


def runs_on(backend, folder):
    """Every script's steered run (the GRU's on your own sequences) and --use-cudnn true
    without a GPU: (results, folders). JAX and torch take the backend from $KERAS_BACKEND
    (the default); on TensorFlow, --backend wins over $KERAS_BACKEND."""
    x, y = separable_sequences(400, seed=12)
    arrays = {
        "x_train": x[:320],
        "y_train": y[:320],
        "x_test": x[320:],
        "y_test": y[320:],
    }
    np.savez(folder / "classes.npz", **arrays)
    own = ["--backend", "tensorflow"] if backend == "tensorflow" else []
    steps, outs = [], {}
    for script in SCRIPTS:
        outs[script] = folder / script.removesuffix(".py")
        steering = STEERING[script]
        if backend == "tensorflow":  # determinism is TensorFlow's for the whole process:
            steering = [f for f in steering if f != "--deterministic"]  # test_rundir's
        if script == "train_gru.py":
            steering = ["--data", folder / "classes.npz", *steering]
            if backend == "jax":  # exported through TensorFlow, from a JAX process
                steering += ["--export", "onnx"]
        steps.append((script, [*own, *steering, "--output-dir", outs[script]]))
    cudnn = [*TINY, "--use-cudnn", "true", "--output-dir", folder / "cudnn"]
    steps.append(("train_lstm.py", [*own, *cudnn]))
    if backend == "tensorflow":
        env = {"KERAS_BACKEND": "jax"}
        results = [run_here(script, *args, env=env) for script, args in steps]
    else:
        results = run_in_one_process(*steps, env={"KERAS_BACKEND": backend})
    return dict(zip([*SCRIPTS, "cudnn"], results)), outs


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    found = {}

    def on(backend):
        if backend != "tensorflow" and not importable(backend):
            pytest.skip(
                f"{backend} is not installed (pip install -r requirements-{backend}.txt)"
            )
        if backend not in found:
            found[backend] = runs_on(backend, tmp_path_factory.mktemp(backend))
        return found[backend]

    return on


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_run_on_backend(backends, script, backend):
    results, outs = backends(backend)
    result, out = results[script], outs[script]
    assert result.returncode == 0, explain(result)
    # --backend, or $KERAS_BACKEND
    assert result.stdout.startswith(f"backend {backend} ")
    assert "Traceback" not in result.stderr, explain(result)
    metrics = read_metrics(out)
    assert metrics["backend"] == backend and metrics["versions"][backend]
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["reloaded_model_max_difference"] < 1e-4
    for name in ("model.keras", "best.keras", "history.csv", "curves.png"):
        assert (out / name).is_file(), name
    settings = metrics["settings_in_effect"]
    if "--optimizer" in STEERING[script]:
        optimizer = STEERING[script][STEERING[script].index("--optimizer") + 1]
        assert settings["optimizer"].lower() == optimizer
    if "--tensorboard" in STEERING[script]:
        assert list((out / "logs" / "train").glob("events.out.tfevents.*"))
        assert metrics["restored_best_weights"] is True
    if backend == "torch":
        assert settings["fused_kernels"] == {"torch_fused_kernels": "active"}
    if backend == "jax":
        assert settings["jax_gpu_preallocation"] is False
    if "--mixed-precision" in STEERING[script]:
        assert settings["compute_dtype"] == "bfloat16"


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_each_backend_learns_and_they_agree_on_the_predictions(
    backends, backend, tmp_path
):
    results, outs = backends(backend)
    metrics = read_metrics(outs["train_gru.py"])
    assert metrics["test_accuracy"] >= 0.9 and metrics["backend"] == backend
    if backend == "tensorflow":
        return
    x, _ = separable_sequences(400, seed=12)
    np.save(tmp_path / "test.npy", x[320:])
    classes = {}
    for name in ("tensorflow", backend):
        run = backends(name)[1]["train_gru.py"]
        found = predict_here(run, tmp_path / "test.npy", cwd=tmp_path)
        assert found.returncode == 0, explain(found)
        lines = found.stdout.splitlines()
        classes[name] = [line.rsplit(": ", 1)[1].split(" (")[0] for line in lines]
    agree = np.mean(np.array(classes["tensorflow"]) == np.array(classes[backend]))
    assert agree >= 0.9, agree


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_use_cudnn_true_without_gpu_is_one_line_error(backends, backend):
    result = backends(backend)[0]["cudnn"]
    if "GPU:" in result.stdout:  # a machine with a GPU: cuDNN may run
        pytest.skip("a GPU is present")
    assert result.returncode == 1, explain(result)
    assert result.stderr.startswith("error: --use-cudnn true needs an NVIDIA GPU"), (
        explain(result)
    )
    assert result.stderr.count("\n") == 1


def test_a_run_of_each_backend_loads_and_predicts_the_same_on_every_backend(
    backends, tmp_path
):
    """The GRU trained on each backend: its final and best models predict the same
    probabilities whichever backend predict.py loads them with."""
    from test_predict import json_rows

    if not (importable("jax") and importable("torch")):
        pytest.skip("needs both jax and torch")
    np.save(tmp_path / "raw.npy", separable_sequences(400, seed=12)[0][320:326])
    runs = {b: backends(b)[1]["train_gru.py"] for b in ("tensorflow", "jax", "torch")}
    models = [(runs[r], m) for r in runs for m in ("final", "best")]
    found = {
        backend: run_in_one_process(
            *[
                ("predict.py", [run, tmp_path / "raw.npy", "--json", "--model", model])
                for run, model in models
            ],
            env={"KERAS_BACKEND": backend},
        )
        for backend in ("jax", "torch")
    }
    found["tensorflow"] = [
        predict_here(run, tmp_path / "raw.npy", "--json", "--model", model, cwd=tmp_path)
        for run, model in models
    ]
    probabilities = {
        backend: [
            [list(r["probabilities"].values()) for r in json_rows(result)]
            for result in results
        ]
        for backend, results in found.items()
    }
    assert np.array(probabilities["tensorflow"]).shape == (6, 6, 4)
    for backend in ("jax", "torch"):
        np.testing.assert_allclose(
            probabilities[backend], probabilities["tensorflow"], atol=1e-4
        )


def test_a_run_trained_on_jax_is_exported_through_tensorflow(backends):
    from test_export import keras_outputs, onnx_outputs

    pytest.importorskip("onnxruntime")
    run = backends("jax")[1]["train_gru.py"]
    assert read_metrics(run)["backend"] == "jax"
    x = separable_sequences(400, seed=12)[0][:4].astype(np.float32)
    expected = keras_outputs(run, standardised(run, x))
    np.testing.assert_allclose(
        onnx_outputs(run / "export" / "model.onnx", x), expected, atol=1e-5
    )
