"""Every script runs unchanged on the JAX and PyTorch backends (CPU), chosen by --backend.

Each test trains a tiny model for one epoch in a subprocess; the backend's package must be
installed (pip install -r requirements-jax.txt / requirements-torch.txt), else it is skipped.

Slow by design (every run of the suite ends with this file's seconds): every script trains
on each of the three backends, a subprocess per run.
"""

import pytest

from helpers import MNIST_SCRIPTS, SCRIPTS, explain, importable, read_metrics, run_script

# Small enough to keep a run under ~30 s on 2 cores (torch runs each time step from Python).
TINY = ("--smoke", "--limit", "150", "--units", "16", "--batch-size", "64")
IMDB_TINY = ("--synthetic", "--vocab-size", "2000", "--max-length", "30")


def needs(backend):
    if backend != "tensorflow" and not importable(backend):
        pytest.skip(
            f"the {backend} package is not installed "
            f"(pip install -r requirements-{backend}.txt)"
        )


def data_args(script):
    return (
        IMDB_TINY if script == "train_imdb_bilstm.py" else ("--dataset", "mnist-sample")
    )


# Each script also tries some of the steering flags, so that every flag runs on every backend.
STEERING = {
    "train_simplernn.py": ["--optimizer", "sgd", "--num-layers", "1"],
    "train_gru.py": [
        "--lr-schedule",
        "plateau",
        "--optimizer",
        "rmsprop",
        "--epochs",
        "2",
    ],
    "train_lstm.py": [
        "--lr-schedule",
        "cosine",
        "--clipnorm",
        "1.0",
        "--early-stopping",
        "1",
        "--epochs",
        "2",
        "--tensorboard",
    ],  # fmt: skip
    "train_bilstm.py": ["--num-layers", "1", "--mixed-precision", "bfloat16"],
    "train_imdb_bilstm.py": ["--deterministic"],
}


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_run_on_backend(script, backend, tmp_path):
    needs(backend)
    out = tmp_path / "out"
    result = run_script(
        script,
        "--backend",
        backend,
        *TINY,
        *data_args(script),
        *STEERING[script],
        "--output-dir",
        out,
        cwd=tmp_path,
        env={"KERAS_BACKEND": "tensorflow"},
    )  # --backend must win; fmt: skip
    assert result.returncode == 0, explain(result)
    assert f"backend {backend} " in result.stdout
    assert "Traceback" not in result.stderr, explain(result)
    metrics = read_metrics(out)
    assert metrics["backend"] == backend
    assert metrics["versions"][backend]
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
    if "--mixed-precision" in STEERING[script]:
        assert settings["compute_dtype"] == "bfloat16"


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_use_cudnn_true_without_gpu_is_one_line_error(backend, tmp_path):
    needs(backend)
    result = run_script(
        MNIST_SCRIPTS[2],
        "--backend",
        backend,
        "--use-cudnn",
        "true",
        *TINY,
        "--dataset",
        "mnist-sample",
        "--output-dir",
        tmp_path / "out",
        cwd=tmp_path,
    )
    if "GPU:" in result.stdout:  # a machine with a GPU: cuDNN may run
        pytest.skip("a GPU is present")
    assert result.returncode == 1, explain(result)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: --use-cudnn true needs an NVIDIA GPU"), explain(
        result
    )
    assert "Traceback" not in result.stderr
