"""The speed-ups' guard: a version they were not tested with, or a self-check that fails,
keeps a speed-up off with one line and the run finishes; --fused-kernels off leaves Keras'
own code untouched while the model trains. (The speed-ups' own arithmetic against Keras':
test_gru_split.py and test_torch_fused.py.)"""

import importlib
import json
import subprocess
import sys
import types

import keras
import pytest

import common
from helpers import ROOT, explain, importable, read_metrics, script_env
from rnn_scripts import speedups
from rnn_scripts.speedups import gru_split

TINY = ["--synthetic", "--limit", "120", "--units", "4", "--epochs", "1"]


def cell_call():
    from keras.src.layers.rnn.gru import GRUCell

    return GRUCell.call


@pytest.fixture
def keras_own_gru():
    """Keras' GRUCell.call, and the speed-up uninstalled again after the test."""
    gru_split.uninstall()
    yield cell_call()
    gru_split.uninstall()


def test_a_version_it_was_not_tested_with_keeps_it_off_in_one_line(
    keras_own_gru, monkeypatch, capsys
):
    monkeypatch.setattr(keras, "__version__", "3.16.2")
    report = speedups.install(types.SimpleNamespace(fused_kernels="auto"))
    assert report == {
        "gru_split_cell": "off: keras 3.16.2 is not a version it was tested with (3.15.0 up to 3.16.0)"
    }
    assert capsys.readouterr().out == (
        "note: the gru_split_cell speed-up is off (keras 3.16.2 is not a version it was tested "
        "with (3.15.0 up to 3.16.0)); training runs Keras' own code\n"
    )
    assert cell_call() is keras_own_gru


@pytest.mark.parametrize(
    "found, expected",
    [
        ("2.13.0+cpu", True),
        ("2.13.9", True),
        ("2.14.0", False),
        ("2.12.1", False),
        (None, False),
    ],
)
def test_the_tested_range_is_read_as_versions_not_text(found, expected, monkeypatch):
    monkeypatch.setattr(speedups, "installed_version", lambda package: found)
    assert (
        speedups.untested_version({"torch": ("2.13.0", "2.14.0")}) is None
    ) == expected


def run_in_process(argv, callbacks=None):
    module = importlib.import_module("train_gru")
    common.run(
        module.build_model,
        reads="sequences",
        epochs=1,
        argv=[str(a) for a in argv],
        callbacks=callbacks,
    )


def test_a_self_check_that_fails_keeps_it_off_and_the_run_finishes(
    keras_own_gru, monkeypatch, tmp_path, capsys
):
    own_split = gru_split._split_call

    def off_by_a_little(original):
        split = own_split(original)

        def call(self, inputs, states, training=False):
            h, new_states = split(self, inputs, states, training)
            return h + 1e-3, new_states

        return call

    monkeypatch.setattr(gru_split, "_split_call", off_by_a_little)
    seen = []
    run_in_process(
        [*TINY, "--output-dir", tmp_path / "run"], callbacks=lambda: [Record(seen)]
    )
    out = capsys.readouterr().out
    assert (
        "note: the gru_split_cell speed-up is off (its outputs or gradients differ from Keras' by "
        in out
    )
    assert read_metrics(tmp_path / "run")["settings_in_effect"]["fused_kernels"][
        "gru_split_cell"
    ].startswith("off: its outputs")
    # Keras' cell trained the model
    assert seen and all(call is keras_own_gru for call in seen)


class Record(keras.callbacks.Callback):
    """Records which GRUCell.call is in place at every training batch."""

    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append(cell_call())


def test_fused_kernels_off_leaves_keras_own_cell_in_place_and_is_recorded(
    keras_own_gru, tmp_path
):
    seen = []
    run_in_process(
        [*TINY, "--fused-kernels", "off", "--output-dir", tmp_path / "off"],
        callbacks=lambda: [Record(seen)],
    )
    assert seen and all(call is keras_own_gru for call in seen)
    metrics = read_metrics(tmp_path / "off")
    assert (
        metrics["arguments"]["fused_kernels"] == "off"
        and metrics["settings_in_effect"]["fused_kernels"] == {}
    )
    seen.clear()
    run_in_process(
        [*TINY, "--output-dir", tmp_path / "auto"], callbacks=lambda: [Record(seen)]
    )
    assert seen and all(call is not keras_own_gru for call in seen)
    assert read_metrics(tmp_path / "auto")["settings_in_effect"]["fused_kernels"] == {
        "gru_split_cell": "active"
    }


@pytest.mark.skipif(not importable("torch"), reason="torch is not installed")
def test_fused_kernels_off_on_torch_trains_with_keras_own_functions(tmp_path):
    program = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
import keras
from keras.src import backend
import common, train_lstm
own = backend.lstm
seen = []
class Record(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        seen.append(backend.lstm is own)
for setting in ("off", "auto"):
    seen.clear()
    common.run(train_lstm.build_model, argv={[*TINY]!r} + ["--backend", "torch", "--fused-kernels", setting, "--output-dir", {str(tmp_path)!r} + "/" + setting], callbacks=lambda: [Record()])
    print("SEEN", setting, json.dumps(sorted(set(seen))))
"""
    done = subprocess.run(
        [sys.executable, "-c", program],
        env=script_env({"KERAS_BACKEND": "torch"}),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, explain(done)
    assert "SEEN off [true]" in done.stdout and "SEEN auto [false]" in done.stdout
    assert read_metrics(tmp_path / "auto")["settings_in_effect"]["fused_kernels"] == {
        "torch_fused_kernels": "active"
    }
    assert (
        json.loads((tmp_path / "off" / "args.json").read_text())["arguments"][
            "fused_kernels"
        ]
        == "off"
    )
