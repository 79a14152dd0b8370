"""--distribute mirrored: data parallelism over 2 logical CPU devices (RNN_SCRIPTS_CPU_DEVICES=2),
with tf.distribute.MirroredStrategy on TensorFlow and keras.distribution.DataParallel on JAX,
trains what one device trains; --distribute multi-worker on TensorFlow fails at once with one
line (Keras 3 cannot run it).

The logical devices are fixed when a backend starts, so each backend's mirrored runs (and
their one-device references) share one process of their own (helpers.run_in_one_process).
"""

import numpy as np
import pytest

from helpers import (
    RUN_FILES,
    assert_same_weights,
    explain,
    importable,
    read_history,
    read_metrics,
    run_here,
    run_in_one_process,
)

# 307 examples: 276 train (last batch of 20 splits evenly), 31 validation and 51 test
# (do not): mirrored runs drop the odd row, since an uneven batch fails on either backend.
SMALL = ["--dataset", "mnist-sample", "--limit", "307", "--epochs", "2", "--units", "8"]
SMALL += ["--num-layers", "1", "--learning-rate", "0.005"]
TWO_DEVICES = {"RNN_SCRIPTS_CPU_DEVICES": "2"}
RUNS = {"tensorflow": ("train_gru.py", "train_bilstm.py"), "jax": ("train_lstm.py",)}


def mirrored_and_one_device(backend, script, folder, *more):
    """One process: the script mirrored, then on one device (the reference), then `more`;
    TensorFlow trains under one MirroredStrategy per process."""
    name = script.removesuffix(".py")
    steps = [
        (
            script,
            [
                "--backend",
                backend,
                *SMALL,
                "--distribute",
                "mirrored",
                "--output-dir",
                folder / name,
            ],
        ),
        (script, ["--backend", backend, *SMALL, "--output-dir", folder / f"{name}-one"]),
        *more,
    ]
    results = run_in_one_process(*steps, env=TWO_DEVICES)
    return (results[0], folder / name, folder / f"{name}-one"), results[2:]


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """backend -> ({script: (mirrored result, its folder, one-device folder)}, the refused
    batch size's result)."""
    found = {}

    def on(backend):
        if backend == "jax" and not importable("jax"):
            pytest.skip(
                "the jax package is not installed (pip install -r requirements-jax.txt)"
            )
        if backend in found:
            return found[backend]
        folder = tmp_path_factory.mktemp(backend)
        odd = [
            "--distribute",
            "mirrored",
            "--batch-size",
            "63",
            "--output-dir",
            folder / "odd",
        ]
        refused = ("train_simplernn.py", ["--backend", backend, *SMALL, *odd])
        runs, refusal = {}, None
        for number, script in enumerate(RUNS[backend]):
            more = [refused] if number == 0 else []  # after the first mirrored run
            runs[script], extra = mirrored_and_one_device(backend, script, folder, *more)
            refusal = refusal or (extra[0] if extra else None)
        found[backend] = runs, refusal
        return found[backend]

    return on


def output_shape_on_one_device(model_file):
    """Load the saved model here (one device, no strategy) and predict 3 images."""
    import keras

    found = keras.saving.load_model(model_file).predict(
        np.zeros((3, 28, 28), "float32"), verbose=0
    )
    return found.shape, bool(np.isfinite(found).all())


@pytest.mark.parametrize(
    "backend, script",
    [
        ("tensorflow", "train_gru.py"),
        ("tensorflow", "train_bilstm.py"),
        ("jax", "train_lstm.py"),
    ],
)
def test_a_mirrored_run_trains_what_one_device_trains(mirrored, backend, script):
    (result, out, one_device) = mirrored(backend)[0][script]
    assert result.returncode == 0, explain(result)
    assert "2 replicas" in result.stdout and result.stdout.count("test accuracy") == 1
    assert {p.name for p in out.iterdir()} == RUN_FILES  # no partial file, no lock
    metrics = read_metrics(out)
    assert metrics["replicas"] == 2 and metrics["backend"] == backend
    assert metrics["test_examples"] == 50  # 51 does not split evenly over 2 replicas
    assert metrics["reloaded_model_max_difference"] < 1e-4
    rows = read_history(out)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["loss"] < rows[0]["loss"], (
        rows
    )
    assert output_shape_on_one_device(out / "model.keras") == ((3, 10), True)
    # each batch split over the two devices, the gradients summed: one device's training
    assert read_metrics(one_device)["replicas"] == 1
    one = read_history(one_device)
    np.testing.assert_allclose(
        [r["loss"] for r in rows], [r["loss"] for r in one], rtol=1e-4
    )
    assert_same_weights(out, one_device, atol=1e-4)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_mirrored_rejects_batch_size_that_does_not_split(mirrored, backend):
    result = mirrored(backend)[1]
    assert result.returncode == 1, explain(result)
    assert result.stderr == (
        "error: the --batch-size 63 does not split evenly over 2 devices; "
        "choose a multiple of 2\n"
    ), explain(result)


def test_multi_worker_on_tensorflow_is_refused_pointing_to_jax(tmp_path):
    """MultiWorkerMirroredStrategy breaks model.fit under Keras 3 (keras-team/keras#20585)."""
    args = ["--distribute", "multi-worker", *SMALL, "--output-dir", tmp_path / "out"]
    result = run_here("train_lstm.py", *args, cwd=tmp_path)
    assert result.returncode == 1, explain(result)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "use --backend jax --distribute multi-worker" in result.stderr
    assert not (tmp_path / "out").exists()
