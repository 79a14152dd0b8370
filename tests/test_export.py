"""Export for serving: the exported model takes raw inputs (the preprocessing is inside) and
returns probabilities or values, checked in each format's own runtime (TensorFlow for
SavedModel, onnxruntime for ONNX) against model.keras applied to inputs preprocessed here,
from the run's preprocessing.json, on inputs whose preprocessing matters (offsets and
scales far from 0 and 1, pixels 0-255, raw texts).

export.py runs in this test process (helpers.call_here); a run trained on JAX is exported
by a TensorFlow process of its own, as export.py does it.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from files import sentences, separable_sequences, write_regression
from helpers import (
    ROOT,
    call_here,
    explain,
    importable,
    predict_here,
    run_here,
    script_env,
    standardised,
)

pytestmark = pytest.mark.skipif(
    not importable("onnxruntime") or not importable("tf2onnx"),
    reason="pip install -r requirements-dev.txt",
)


def export(run, *args):
    from rnn_scripts.export import main

    done = call_here(main, [run, *args])
    assert done.returncode == 0 and done.stderr == "", explain(done)
    return done


def predict_json(run, *inputs, cwd):
    rows = [
        json.loads(line)
        for line in predict_here(run, *inputs, "--json", cwd=cwd).stdout.splitlines()
    ]
    key = "values" if "values" in rows[0] else "probabilities"
    return np.array([list(row[key].values()) for row in rows])


def saved_model_outputs(path, inputs):
    import tensorflow as tf

    # referenced while called: its variables live in it
    loaded = tf.saved_model.load(str(path))
    return loaded.serve(inputs).numpy()


def onnx_outputs(path, inputs):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path))
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]


def keras_outputs(run, model_input, name="model.keras"):
    """model.keras on an input prepared here: softmax for logits, or the values."""
    import keras

    spec = json.loads((run / "preprocessing.json").read_text())
    found = keras.saving.load_model(run / name).predict(model_input, verbose=0)
    if spec["task"] == "regression" or spec["output"] == "probabilities":
        return found
    shifted = np.exp(found - found.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def exported_at_the_end(tmp_path_factory):
    """Classes from your own sequences, exported in both formats by --export."""
    folder = tmp_path_factory.mktemp("sequences")
    x, y = separable_sequences(400, seed=2)
    np.savez(folder / "my.npz", x_train=x, y_train=y)
    args = [
        "--data",
        folder / "my.npz",
        "--epochs",
        "2",
        "--units",
        "8",
        "--num-layers",
        "1",
    ]
    args += [
        "--export",
        "onnx",
        "--export",
        "saved_model",
        "--output-dir",
        folder / "run",
    ]
    result = run_here("train_gru.py", *args)
    assert result.returncode == 0, explain(result)
    assert f"exported {folder / 'run' / 'export' / 'model.onnx'}" in result.stdout
    return folder / "run"


def test_an_exported_sequence_classifier_takes_raw_values(exported_at_the_end, tmp_path):
    run = exported_at_the_end
    x = separable_sequences(7, seed=11)[0].astype(np.float32)  # raw: around 10, spread 4
    expected = keras_outputs(run, standardised(run, x))
    # the scaling matters
    assert not np.allclose(keras_outputs(run, x), expected, atol=1e-3)
    np.save(tmp_path / "x.npy", x)
    np.testing.assert_allclose(
        predict_json(run, "x.npy", cwd=tmp_path), expected, atol=1e-5
    )
    for found in (
        onnx_outputs(run / "export" / "model.onnx", x),
        saved_model_outputs(run / "export" / "saved_model", x),
    ):
        np.testing.assert_allclose(found, expected, atol=1e-5)
    description = json.loads((run / "export" / "serving.json").read_text())
    assert description["classes"] == ["0", "1", "2", "3"]
    assert "unscaled values" in description["input"]


def test_an_exported_image_classifier_takes_pixels_0_to_255_from_best_keras_into_output(
    finished, tmp_path
):
    from rnn_scripts.data.official import synthetic_images

    run = tmp_path / "run"
    shutil.copytree(finished("images"), run)
    shutil.copy(run / "model.keras", run / "best.keras")
    (run / "model.keras").unlink()  # --model best reads best.keras alone
    export(run, "--format", "onnx", "--model", "best", "--output", tmp_path / "served")
    assert (
        not (run / "export").exists()
        and (tmp_path / "served" / "serving.json").is_file()
    )
    pixels = synthetic_images(5, np.random.default_rng(4))[0].astype(np.float32)
    found = onnx_outputs(tmp_path / "served" / "model.onnx", pixels)
    expected = keras_outputs(run, pixels / 255.0, name="best.keras")
    np.testing.assert_allclose(found, expected, atol=1e-5)
    np.testing.assert_allclose(found.sum(axis=1), 1, atol=1e-5)


def test_an_exported_regression_returns_values_in_the_targets_units(finished, tmp_path):
    run = finished("regression")
    x, _ = write_regression(tmp_path / "values.npz")
    x = x[:6]
    export(
        run,
        "--format",
        "onnx",
        "--format",
        "saved_model",
        "--output",
        tmp_path / "served",
    )
    # model.keras ends in target units
    expected = keras_outputs(run, standardised(run, x))
    assert 250 < expected.mean() < 350  # values around 300, not standardised ones
    np.save(tmp_path / "x.npy", x)
    np.testing.assert_allclose(
        predict_json(run, "x.npy", cwd=tmp_path), expected, rtol=1e-5
    )
    for found in (
        onnx_outputs(tmp_path / "served" / "model.onnx", x),
        saved_model_outputs(tmp_path / "served" / "saved_model", x),
    ):
        np.testing.assert_allclose(found, expected, atol=1e-3, rtol=1e-6)


def test_an_exported_text_classifier_takes_strings_as_saved_model_and_word_ids_as_onnx(
    finished, tmp_path
):
    import keras

    run = finished("texts")
    export(
        run,
        "--format",
        "saved_model",
        "--format",
        "onnx",
        "--output",
        tmp_path / "served",
    )
    texts = sentences(6, seed=8)[0]
    vocabulary = json.loads((run / "vocabulary.json").read_text())
    assert (
        json.loads((tmp_path / "served" / "vocabulary.json").read_text()) == vocabulary
    )
    spec = json.loads((run / "preprocessing.json").read_text())
    # what a server does with vocabulary.json
    vectorize = keras.layers.TextVectorization(
        vocabulary=vocabulary, output_sequence_length=spec["max_length"]
    )
    ids = np.asarray(vectorize(np.array(texts, dtype=object)), np.int32)
    expected = keras_outputs(run, ids)
    found = saved_model_outputs(
        tmp_path / "served" / "saved_model", np.array(texts, dtype=object)
    )
    np.testing.assert_allclose(found, expected, atol=1e-5)
    np.testing.assert_allclose(
        onnx_outputs(tmp_path / "served" / "model.onnx", ids), expected, atol=1e-5
    )
    described = json.loads((tmp_path / "served" / "serving.json").read_text())["input"]
    assert "word ids from vocabulary.json" in described


def test_exporting_a_missing_run_is_one_line(tmp_path):
    command = [sys.executable, str(ROOT / "export.py"), str(tmp_path / "nothing")]
    done = subprocess.run(command, env=script_env(), capture_output=True, text=True)
    assert (
        done.returncode == 1
        and done.stderr == f"error: no run folder {tmp_path / 'nothing'}\n"
    )


def test_without_the_onnx_converter_the_error_offers_the_extra(finished, monkeypatch):
    import importlib.util

    from rnn_scripts.export import main

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tf2onnx" else find_spec(name, *a),
    )
    done = call_here(main, [finished("images"), "--format", "onnx"])
    assert done.returncode == 1 and done.stderr.count("\n") == 1, explain(done)
    assert (
        'pip install "rnn-scripts[export]"' in done.stderr
        and "onnxruntime runs" in done.stderr
    )
    readme = (ROOT / "README.md").read_text()
    assert 'pip install "rnn-scripts[export]"' in readme and "onnxruntime" in readme


def test_an_output_folder_that_cannot_be_written_is_one_line(finished, tmp_path):
    import os

    from rnn_scripts.export import main

    locked = tmp_path / "locked"
    if (
        os.geteuid() == 0
    ):  # root writes into a read-only folder: a file in the way instead
        locked.write_text("a file, not a folder")
        reason = "Not a directory"
    else:
        locked.mkdir(mode=0o500)
        reason = "Permission denied"
    done = call_here(main, [finished("images"), "--output", locked / "served"])
    assert done.returncode == 1 and done.stderr.count("\n") == 1, explain(done)
    assert done.stderr == f"error: cannot write to {locked / 'served'}: {reason}\n"
