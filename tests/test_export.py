"""Export for serving: the exported model takes raw inputs (the preprocessing is inside) and
returns predict.py's probabilities or values, checked with each format's own runtime:
TensorFlow for SavedModel, onnxruntime for ONNX.

Slow by design (every run of the suite ends with this file's seconds): each export traces a
trained model into SavedModel or ONNX and loads it in that format's runtime.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from files import sentences, separable_sequences, write_sentences_csv
from helpers import ROOT, explain, importable, run_script, script_env

pytestmark = pytest.mark.skipif(
    not importable("onnxruntime") or not importable("tf2onnx"),
    reason="pip install -r requirements-dev.txt",
)


def predict_json(run, *inputs, cwd):
    done = subprocess.run(
        [sys.executable, str(ROOT / "predict.py"), str(run), *inputs, "--json"],
        cwd=cwd,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, explain(done)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    key = "values" if "values" in rows[0] else "probabilities"
    return np.array([list(row[key].values()) for row in rows])


def export(run, *formats, env=None):
    command = [sys.executable, str(ROOT / "export.py"), str(run)] + [
        a for f in formats for a in ("--format", f)
    ]
    done = subprocess.run(
        command,
        cwd=run.parent,
        env=script_env(env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0 and done.stderr == "", explain(done)
    return done


def saved_model_outputs(path, inputs):
    import tensorflow as tf

    loaded = tf.saved_model.load(
        str(path)
    )  # referenced while called: its variables live in it
    return loaded.serve(inputs).numpy()


def onnx_outputs(path, inputs):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path))
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]


@pytest.fixture(scope="module")
def sequence_run(tmp_path_factory):
    """Classes from your own sequences, exported at the end of training (--export)."""
    folder = tmp_path_factory.mktemp("sequences")
    x, y = separable_sequences(400, seed=2)
    np.savez(folder / "my.npz", x_train=x, y_train=y)
    result = run_script(
        "train_gru.py",
        "--data",
        folder / "my.npz",
        "--epochs",
        "2",
        "--units",
        "8",
        "--export",
        "onnx",
        "--export",
        "saved_model",
        "--output-dir",
        folder / "run",
    )
    assert result.returncode == 0, explain(result)
    assert f"exported {folder / 'run' / 'export' / 'model.onnx'}" in result.stdout
    return folder / "run"


def test_an_exported_sequence_classifier_returns_predict_pys_probabilities_from_raw_values(
    sequence_run, tmp_path
):
    x, _ = separable_sequences(7, seed=11)  # raw, unscaled values
    x = x.astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = predict_json(sequence_run, "x.npy", cwd=tmp_path)
    for found in (
        onnx_outputs(sequence_run / "export" / "model.onnx", x),
        saved_model_outputs(sequence_run / "export" / "saved_model", x),
    ):
        np.testing.assert_allclose(found, expected, atol=1e-5)
    description = json.loads((sequence_run / "export" / "serving.json").read_text())
    assert (
        description["classes"] == ["0", "1", "2", "3"]
        and "unscaled values" in description["input"]
    )


def test_an_exported_image_classifier_takes_pixels_0_to_255(tmp_path):
    from rnn_scripts.data.official import synthetic_images

    run = tmp_path / "run"
    result = run_script(
        "train_gru.py",
        "--synthetic",
        "--limit",
        "300",
        "--epochs",
        "1",
        "--units",
        "4",
        "--output-dir",
        run,
    )
    assert result.returncode == 0, explain(result)
    export(run, "onnx")
    pixels = synthetic_images(5, np.random.default_rng(4))[0]
    np.save(tmp_path / "pixels.npy", pixels)
    found = onnx_outputs(run / "export" / "model.onnx", pixels.astype(np.float32))
    np.testing.assert_allclose(
        found, predict_json(run, "pixels.npy", cwd=tmp_path), atol=1e-5
    )
    np.testing.assert_allclose(found.sum(axis=1), 1, atol=1e-5)


def test_an_exported_regression_returns_values_in_the_targets_units(tmp_path):
    from test_template import write_regression

    x, _ = write_regression(tmp_path / "values.npz", count=200)
    run = tmp_path / "run"
    result = run_script(
        "train_lstm.py",
        "--data",
        tmp_path / "values.npz",
        "--epochs",
        "2",
        "--units",
        "8",
        "--output-dir",
        run,
    )
    assert result.returncode == 0, explain(result)
    export(run, "onnx", "saved_model")
    np.save(tmp_path / "x.npy", x[:6])
    expected = predict_json(run, "x.npy", cwd=tmp_path)
    assert 150 < expected.mean() < 450  # values, not standardised ones
    for found in (
        onnx_outputs(run / "export" / "model.onnx", x[:6]),
        saved_model_outputs(run / "export" / "saved_model", x[:6]),
    ):
        np.testing.assert_allclose(found, expected, atol=1e-3, rtol=1e-6)


def test_an_exported_text_classifier_takes_strings_as_saved_model_and_word_ids_as_onnx(
    tmp_path,
):
    write_sentences_csv(tmp_path / "s.csv", count=300)
    run = tmp_path / "run"
    result = run_script(
        "train_imdb_bilstm.py",
        "--data",
        tmp_path / "s.csv",
        "--epochs",
        "2",
        "--units",
        "4",
        "--max-length",
        "12",
        "--output-dir",
        run,
    )
    assert result.returncode == 0, explain(result)
    export(run, "saved_model", "onnx")
    texts = sentences(6, seed=8)[0]
    expected = predict_json(run, "--text", *texts, cwd=tmp_path)
    np.testing.assert_allclose(
        saved_model_outputs(
            run / "export" / "saved_model", np.array(texts, dtype=object)
        ),
        expected,
        atol=1e-5,
    )
    from rnn_scripts.preprocess import Preprocessing

    vocabulary = json.loads((run / "export" / "vocabulary.json").read_text())
    assert vocabulary == Preprocessing.load(run).vocabulary
    ids = Preprocessing.load(run).vectorize(
        texts
    )  # what a server does with vocabulary.json
    np.testing.assert_allclose(
        onnx_outputs(run / "export" / "model.onnx", ids), expected, atol=1e-5
    )
    assert (
        "word ids from vocabulary.json"
        in json.loads((run / "export" / "serving.json").read_text())["input"]
    )


@pytest.mark.skipif(not importable("jax"), reason="jax is not installed")
def test_a_run_trained_on_jax_is_exported_through_tensorflow(tmp_path):
    x, y = separable_sequences(200, seed=2)
    np.savez(tmp_path / "my.npz", x_train=x, y_train=y)
    run = tmp_path / "run"
    result = run_script(
        "train_gru.py",
        "--backend",
        "jax",
        "--data",
        tmp_path / "my.npz",
        "--epochs",
        "1",
        "--units",
        "4",
        "--export",
        "onnx",
        "--output-dir",
        run,
    )
    assert result.returncode == 0, explain(result)
    np.save(tmp_path / "x.npy", x[:4].astype(np.float32))
    np.testing.assert_allclose(
        onnx_outputs(run / "export" / "model.onnx", x[:4].astype(np.float32)),
        predict_json(run, "x.npy", cwd=tmp_path),
        atol=1e-5,
    )


def test_exporting_a_missing_run_is_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "export.py"), str(tmp_path / "nothing")],
        env=script_env(),
        capture_output=True,
        text=True,
    )
    assert (
        done.returncode == 1
        and done.stderr == f"error: no run folder {tmp_path / 'nothing'}\n"
    )
