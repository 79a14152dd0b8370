"""--distribute: data parallelism over 2 logical CPU devices (RNN_SCRIPTS_CPU_DEVICES=2),
with tf.distribute.MirroredStrategy on TensorFlow and keras.distribution.DataParallel on JAX;
and --distribute multi-worker, which fails at once with one line (Keras 3 cannot run it).

Slow by design (every run of the suite ends with this file's seconds): runs over two logical
devices, compared with runs on one.
"""

import pytest

from helpers import (
    explain,
    importable,
    read_history,
    read_metrics,
    run_script,
)

# 307 examples: 276 train (last batch of 20 splits evenly), 31 validation and 51 test
# (do not): both backends drop the odd row, since an uneven batch fails on either.
SMALL = (
    "--dataset",
    "mnist-sample",
    "--limit",
    "307",
    "--epochs",
    "2",
    "--units",
    "32",
    "--learning-rate",
    "0.005",
)
TWO_DEVICES = {"RNN_SCRIPTS_CPU_DEVICES": "2"}
EXPECTED_FILES = {
    "args.json",
    "preprocessing.json",
    "model.keras",
    "best.keras",
    "history.csv",
    "metrics.json",
    "curves.png",
    "confusion.png",
    "samples.png",
}


def output_shape_on_one_device(model_file):
    """Load the saved model here (one device, no strategy) and predict 3 images."""
    import keras
    import numpy as np

    predictions = keras.saving.load_model(model_file).predict(
        np.zeros((3, 28, 28), "float32"), verbose=0
    )
    return predictions.shape, bool(np.isfinite(predictions).all())


def check_mirrored_run(script, backend, tmp_path):
    out = tmp_path / "out"
    result = run_script(
        script,
        "--backend",
        backend,
        "--distribute",
        "mirrored",
        *SMALL,
        "--output-dir",
        out,
        env=TWO_DEVICES,
        cwd=tmp_path,
    )
    assert result.returncode == 0, explain(result)
    assert "2 replicas" in result.stdout, explain(result)
    assert result.stdout.count("test accuracy") == 1
    # One set of outputs, nothing left behind (no state, no partial files, no runs/ folder).
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    metrics = read_metrics(out)
    assert metrics["replicas"] == 2 and metrics["backend"] == backend
    assert metrics["reloaded_model_max_difference"] < 1e-4
    rows = read_history(out)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["loss"] < rows[0]["loss"], rows
    assert output_shape_on_one_device(out / "model.keras") == ((3, 10), True)
    return metrics


# Two of the four MNIST scripts: they share the pipeline, and these two cover the split GRU
# cell and the Bidirectional wrapper under a strategy (each run takes about a minute on 2 cores).
@pytest.mark.parametrize("script", ["train_gru.py", "train_bilstm.py"])
def test_mirrored_tensorflow(script, tmp_path):
    metrics = check_mirrored_run(script, "tensorflow", tmp_path)
    assert metrics["test_examples"] == 50  # 51 does not split evenly over 2 replicas


@pytest.mark.parametrize("script", ["train_lstm.py"])
def test_mirrored_jax(script, tmp_path):
    if not importable("jax"):
        pytest.skip(
            "the jax package is not installed (pip install -r requirements-jax.txt)"
        )
    metrics = check_mirrored_run(script, "jax", tmp_path)
    assert metrics["test_examples"] == 50


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_mirrored_rejects_batch_size_that_does_not_split(backend, tmp_path):
    if backend == "jax" and not importable("jax"):
        pytest.skip(
            "the jax package is not installed (pip install -r requirements-jax.txt)"
        )
    result = run_script(
        "train_simplernn.py",
        "--backend",
        backend,
        "--distribute",
        "mirrored",
        *SMALL,
        "--batch-size",
        "63",
        "--output-dir",
        tmp_path / "out",
        env=TWO_DEVICES,
        cwd=tmp_path,
    )
    assert result.returncode == 1, explain(result)
    assert result.stderr == (
        "error: the --batch-size 63 does not split evenly over 2 devices; "
        "choose a multiple of 2\n"
    ), explain(result)


def test_multi_worker_on_tensorflow_is_refused_pointing_to_jax(tmp_path):
    """MultiWorkerMirroredStrategy breaks model.fit under Keras 3 (keras-team/keras#20585)."""
    result = run_script(
        "train_lstm.py", "--distribute", "multi-worker", *SMALL,
        "--output-dir", tmp_path / "out", cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, explain(result)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "use --backend jax --distribute multi-worker" in result.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()
