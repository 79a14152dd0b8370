"""Resuming: killed runs continue exactly, signals at every phase of a real run, a non-finite
loss and how to continue after it, damaged states, changed data, arguments on resume.

What is about a process (SIGKILL, SIGINT, SIGTERM, SIGHUP at each phase) runs as one; the
rest runs in this test process (helpers.run_here), where a run stopped dead after an epoch
(helpers.run_until_epoch) leaves on disk what a killed one leaves.
"""

import json
import re
import shlex
import shutil
import signal
import time

import numpy as np
import pytest

from files import write_sequences_npz
from helpers import (
    assert_same_weights,
    explain,
    importable,
    load_model,
    read_history,
    read_metrics,
    run_here,
    run_script,
    run_until_epoch,
    start_script,
)

# Small enough to run in seconds, big enough for three real epochs of 9 batches each.
TINY = ["--dataset", "mnist-sample", "--limit", "600", "--epochs", "3", "--units", "32"]
TINY += ["--num-layers", "1", "--seed", "7"]
# A run of a few seconds, for what does not depend on real data.
SECONDS = ["--synthetic", "--limit", "120", "--epochs", "1", "--units", "4"]
SECONDS += ["--num-layers", "1"]
# A run that is still training whenever a signal comes (its epochs take a fraction of a
# second each): for what happens to a process that is stopped mid-run.
LONG = ["--synthetic", "--limit", "240", "--units", "4", "--num-layers", "1"]
LONG += ["--epochs", "200"]
# Your own sequences, two epochs: stopped dead after the first (the crashed_own fixture).
OWN = ["--epochs", "2", "--units", "4", "--num-layers", "1"]


def wait_for(path, process, timeout=300, gone=None):
    """Until `path` exists (and `gone`, if given, does not), while the process runs."""
    deadline = time.monotonic() + timeout
    while not path.exists() or (gone is not None and gone.exists()):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear in time"
        time.sleep(0.02)


def state(out, epoch):
    return out / "training-state" / f"epoch-{epoch:04d}.npz"


def kill_after_epoch(script, args, out, epoch=1, env=None):
    process = start_script(script, *args, "--output-dir", out, env=env)
    wait_for(state(out, epoch), process)
    process.kill()  # SIGKILL: no handler runs
    process.wait()
    assert not (out / "metrics.json").exists()


def without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def assert_same_training(first, second):
    """Same seed, same (seed, epoch)-ordered batches, weights and Adam state restored: the
    same float32 operations on this CPU, so the same history and weights."""
    assert without_seconds(read_history(first)) == without_seconds(read_history(second))
    assert_same_weights(first, second)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = run_here("train_lstm.py", *TINY, "--output-dir", out)
    assert result.returncode == 0, explain(result)
    return out


@pytest.fixture(scope="module")
def crashed_own(tmp_path_factory):
    """(run folder, its data): a GRU on your own sequences, stopped dead after epoch 1.
    Tests take copies (copied_run) and change their own copy of the data."""
    folder = tmp_path_factory.mktemp("crashed")
    write_sequences_npz(folder / "own.npz", train=200, test=40)
    run_until_epoch("train_gru.py", ["--data", folder / "own.npz", *OWN], folder / "run")
    return folder / "run", folder / "own.npz"


def copied_run(crashed_own, tmp_path):
    """A copy of crashed_own's run (the data stay where its args.json says)."""
    shutil.copytree(crashed_own[0], tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """TINY, killed with SIGKILL once its first epoch is saved (tests take copies)."""
    out = tmp_path_factory.mktemp("killed") / "run"
    kill_after_epoch("train_lstm.py", TINY, out)
    return out


def test_sigkill_after_epoch_1_then_the_same_command_trains_epochs_2_and_3_exactly(
    tmp_path, killed, uninterrupted
):
    out = tmp_path / "run"
    shutil.copytree(killed, out)
    assert json.loads((out / ".lock").read_text())[
        "pid"
    ]  # the dead process's stale lock
    (out / "training-state" / "epoch-0002.partial.npz").write_bytes(b"half a file")
    (out / "history.csv").write_text("epoch,loss\ngarbage,,,\n")  # only the state counts
    result = run_here("train_lstm.py", *TINY, "--output-dir", out)
    assert result.returncode == 0, explain(result)
    assert f"resuming {out} after epoch 1" in result.stdout
    assert result.stdout.count("Epoch ") == 2  # epochs 2 and 3 trained, not fewer
    metrics = read_metrics(out)
    assert metrics["resumed_after_epoch"] == 1 and metrics["epochs_this_session"] == 2
    assert metrics["epochs_run"] == 3 and len(metrics["epoch_seconds"]) == 2
    assert [r["epoch"] for r in read_history(out)] == [1, 2, 3]
    assert_same_training(out, uninterrupted)
    assert [p.name for p in (out / "training-state").iterdir()] == [
        "epoch-0003.npz"
    ]  # the last
    assert not (out / ".lock").exists()
    summary = re.search(r"Total params: ([\d,]+)", result.stdout).group(1)
    assert int(summary.replace(",", "")) == metrics["parameters"]  # not the optimizer's


def test_best_keras_is_the_epoch_with_the_best_validation_accuracy(uninterrupted):
    from test_data import prepared

    rows = read_history(uninterrupted)
    best = max(rows, key=lambda r: r["val_accuracy"])
    assert read_metrics(uninterrupted)["best_epoch"] == best["epoch"]
    data, _ = prepared(dataset="mnist-sample", limit=600, seed=7)
    logits = load_model(uninterrupted / "best.keras").predict(
        data.validation.x, verbose=0
    )
    accuracy = np.mean(logits.argmax(axis=1) == data.validation.y)
    assert accuracy == pytest.approx(best["val_accuracy"], abs=1e-6)


def test_another_seed_changes_weights_split_and_batch_order(tmp_path, uninterrupted):
    from test_data import prepared

    from rnn_scripts.feed import epoch_order

    args = [*TINY[:-1], "8", "--epochs", "1", "--output-dir", tmp_path / "r"]
    result = run_here("train_lstm.py", *args)
    assert result.returncode == 0, explain(result)
    first = read_history(uninterrupted)[0]
    assert first["loss"] != read_history(tmp_path / "r")[0]["loss"]
    validation = [
        prepared(dataset="mnist-sample", limit=600, seed=seed)[0].validation.y
        for seed in (7, 8)
    ]
    assert not np.array_equal(*validation)
    assert not np.array_equal(epoch_order(100, 7, 0), epoch_order(100, 8, 0))
    assert not np.array_equal(epoch_order(100, 7, 0), epoch_order(100, 7, 1))


def test_two_runs_with_the_same_seed_have_identical_histories(tmp_path, uninterrupted):
    result = run_here("train_lstm.py", *TINY, "--output-dir", tmp_path / "again")
    assert result.returncode == 0, explain(result)
    again = read_history(tmp_path / "again")
    assert without_seconds(again) == without_seconds(read_history(uninterrupted))


# --------------------------------------------------------------------------------------
# Signals at each phase, to a real process
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sent, code, words",
    [
        (signal.SIGINT, 130, "interrupted (Ctrl-C)"),
        (signal.SIGTERM, 143, "terminated (SIGTERM)"),
        (signal.SIGHUP, 129, "hung up (SIGHUP: the terminal closed)"),
    ],
)
def test_a_signal_while_training_keeps_the_last_epoch_and_says_how_to_resume(
    tmp_path, sent, code, words
):
    out = tmp_path / "a run; rm -rf x"  # the hint must quote it
    process = start_script("train_gru.py", *LONG, "--output-dir", out, cwd=tmp_path)
    wait_for(state(out, 1), process)
    process.send_signal(sent)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert stderr.strip().count("\n") == 0 and stderr.startswith(words + "; "), stderr
    kept = int(re.search(r"(\d+) finished epoch\(s\) kept", stderr).group(1))
    assert kept >= 1 and state(out, kept).is_file()
    command = stderr.split("resume with: ", 1)[1].strip()
    assert command == f"python train_gru.py --resume {shlex.quote(str(out))}"
    # what a shell makes of the printed command: four words, nothing of the name runs
    assert shlex.split(command) == ["python", "train_gru.py", "--resume", str(out)]
    if sent == signal.SIGTERM:
        resumed = run_here("train_gru.py", "--resume", out, "--epochs", str(kept + 1))
        assert resumed.returncode == 0, explain(resumed)
        assert read_metrics(out)["epochs_run"] == kept + 1


@pytest.mark.parametrize("sent, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_keras_loads_is_one_line_and_writes_nothing(tmp_path, sent, code):
    out = tmp_path / "run"
    process = start_script("train_lstm.py", *SECONDS, "--output-dir", out, cwd=tmp_path)
    time.sleep(0.8)  # common.py has installed its handlers; Keras is loading
    process.send_signal(sent)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert stderr.strip().endswith("before training started; nothing was written"), (
        stderr
    )
    assert "Traceback" not in stderr and stderr.strip().count("\n") == 0
    assert list(tmp_path.iterdir()) == []


def test_a_signal_while_the_data_load_stops_with_nothing_to_resume(tmp_path):
    out = tmp_path / "run"
    args = ["--synthetic", "--units", "4", "--output-dir", out]
    process = start_script("train_lstm.py", *args, cwd=tmp_path)
    wait_for(out / ".lock", process)  # the folder is claimed; the data are loading
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    message = "interrupted (Ctrl-C); no epoch had finished, nothing to resume"
    assert stderr.strip() == message, stderr
    assert list(tmp_path.iterdir()) == []  # the start that trained nothing left nothing


def test_a_signal_after_the_last_epoch_ends_finished_or_resumable_never_lost(tmp_path):
    out = tmp_path / "run"
    args = [*SECONDS, "--epochs", "2"]
    process = start_script("train_gru.py", *args, "--output-dir", out)
    wait_for(state(out, 2), process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    if process.returncode == 0:  # it had written every output
        assert read_metrics(out)["epochs_run"] == 2
        return
    assert process.returncode == 143 and "2 finished epoch(s) kept" in stderr, stderr
    result = run_here("train_gru.py", "--resume", out)
    assert result.returncode == 0, explain(result)
    metrics = read_metrics(out)
    assert metrics["resumed_after_epoch"] == 2 and metrics["epochs_this_session"] == 0
    assert "no epoch left to run" in result.stdout


def test_a_signal_after_the_final_line_leaves_a_finished_run(tmp_path):
    out = tmp_path / "run"
    process = start_script("train_gru.py", *SECONDS, "--output-dir", out)
    for line in process.stdout:
        if line.startswith("test accuracy"):
            process.send_signal(signal.SIGTERM)
            break
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert (out / "metrics.json").is_file() and "terminated" not in stderr


def test_a_signal_mid_epoch_keeps_the_epochs_shown_and_stops_within_the_epoch(tmp_path):
    out = tmp_path / "run"
    # No validation split: a signal noticed only in validation would stop at the epoch's end.
    long_epochs = [
        "--dataset",
        "mnist-sample",
        "--limit",
        "3000",
        "--validation-split",
        "0",
    ]
    long_epochs += ["--batch-size", "16", "--units", "64", "--epochs", "4"]
    long_epochs += ["--steps-per-execution", "1"]
    process = start_script(
        "train_lstm.py", *long_epochs, "--output-dir", out, env={"PYTHONUNBUFFERED": "1"}
    )
    shown = []
    # until epoch 2 has begun (a signal before it: an epoch's end)
    for line in process.stdout:
        shown.append(line)
        if line.startswith("Epoch 2/"):
            break
    time.sleep(0.5)  # into epoch 2 (188 batches of at least 10 ms)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    stdout = "".join(shown) + stdout
    assert process.returncode == 130, stdout + stderr
    epoch_lines = [line for line in stdout.splitlines() if line.startswith("188/188 - ")]
    assert len(epoch_lines) == 1 and "1 finished epoch(s) kept" in stderr, (
        stdout + stderr
    )
    assert sorted(p.name for p in (out / "training-state").iterdir()) == [
        "epoch-0001.npz"
    ]


def test_ctrl_c_while_the_vocabulary_is_adapted_is_130_and_leaves_nothing(tmp_path):
    from files import write_sentences_csv

    write_sentences_csv(tmp_path / "big.csv", count=200_000)
    out = tmp_path / "run"
    args = ["--data", tmp_path / "big.csv", "--units", "4", "--output-dir", out]
    process = start_script("train_imdb_bilstm.py", *args)
    wait_for(out / ".lock", process)
    time.sleep(3)  # indexing the records, then adapting the vocabulary
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    message = "interrupted (Ctrl-C); no epoch had finished, nothing to resume"
    assert process.returncode == 130 and stderr.strip() == message, stderr
    assert not out.exists()


# --------------------------------------------------------------------------------------
# A non-finite loss, and continuing with the advice it gives
# --------------------------------------------------------------------------------------
def test_a_diverging_run_stops_before_keeping_a_non_finite_epoch(tmp_path):
    """One batch an epoch: the first step's loss is finite, but it leaves NaN weights, which
    the validation loss shows; that epoch is not kept (a resume from it would fail again)."""
    out = tmp_path / "run"
    args = ["--dataset", "mnist-sample", "--limit", "60", "--units", "32"]
    args += ["--learning-rate", "1e4", "--epochs", "3", "--output-dir", out]
    result = run_here("train_simplernn.py", *args)
    assert result.returncode == 1
    assert result.stderr == (
        "the validation loss became nan at epoch 1; no epoch had finished, nothing to "
        "resume; try --learning-rate 5000 --clipnorm 1.0 (a lower learning rate, clipped "
        "gradients)\n"
    )
    assert not out.exists()


def test_an_infinite_loss_stops_at_once_and_names_the_batch(tmp_path):
    from helpers import copy_script

    def infinite_loss(script):
        hook = (
            "def infinite_loss():\n    import keras\n\n"
            '    return lambda y_true, y_pred: keras.ops.mean(y_pred) * 0.0 + float("inf")\n\n\n'
        )
        script = script.replace(
            'if __name__ == "__main__":', hook + 'if __name__ == "__main__":'
        )
        return script.replace(
            "common.run(build_model, ", "common.run(build_model, loss=infinite_loss, "
        )

    script = copy_script("train_gru.py", tmp_path, infinite_loss, "train_inf.py")
    args = [
        "--synthetic",
        "--limit",
        "300",
        "--units",
        "4",
        "--steps-per-execution",
        "1",
    ]
    result = run_here(script, *args, "--output-dir", tmp_path / "run", cwd=tmp_path)
    assert result.returncode == 1, explain(result)
    expected = "loss became inf at epoch 1, batch 1; no epoch had finished"
    assert result.stderr.startswith(expected), explain(result)


def test_after_a_nan_the_suggested_command_continues_from_the_last_good_epoch(tmp_path):
    out = tmp_path / "run"
    run_until_epoch("train_simplernn.py", [*TINY, "--learning-rate", "0.001"], out)
    result = run_here("train_simplernn.py", "--resume", out, "--learning-rate", "1e4")
    assert result.returncode == 1 and "loss became nan at epoch 2" in result.stderr, (
        explain(result)
    )
    assert "1 finished epoch(s) kept" in result.stderr
    advice = result.stderr.split("resume with: python train_simplernn.py ", 1)[1].split(
        " ("
    )[0]
    assert advice == f"--resume {out} --learning-rate 5000 --clipnorm 1.0"
    changes = ["--learning-rate", "0.0005", "--clipnorm", "1.0"]
    result = run_here("train_simplernn.py", "--resume", out, *changes)
    assert result.returncode == 0, explain(result)
    assert "--learning-rate changed from 10000.0 to 0.0005" in result.stdout
    assert [r["epoch"] for r in read_history(out)] == [1, 2, 3]
    assert read_history(out)[-1]["learning_rate"] == pytest.approx(0.0005)
    changes = json.loads((out / "args.json").read_text())["changes"]
    changed = {"learning_rate": [10000.0, 0.0005], "clipnorm": [None, 1.0]}
    assert changes[-1] == {"after_epoch": 1, "changed": changed}
    assert read_metrics(out)["arguments"]["clipnorm"] == 1.0


# --------------------------------------------------------------------------------------
# What a resume reads: states, data, arguments, backend
# --------------------------------------------------------------------------------------
def test_exactly_two_states_are_kept_and_a_damaged_one_falls_back_to_the_one_before(
    tmp_path, uninterrupted
):
    out = tmp_path / "run"
    run_until_epoch("train_lstm.py", TINY, out, epoch=2)
    names = sorted(p.name for p in (out / "training-state").iterdir())
    assert names == ["epoch-0001.npz", "epoch-0002.npz"]
    state(out, 2).write_bytes(state(out, 2).read_bytes()[:2000])
    result = run_here("train_lstm.py", "--resume", out)
    assert result.returncode == 0, explain(result)
    assert f"warning: {state(out, 2)} cannot be used" in result.stdout
    assert f"resuming {out} after epoch 1" in result.stdout
    assert_same_training(out, uninterrupted)
    longer = tmp_path / "longer"
    run_until_epoch("train_gru.py", [*SECONDS, "--epochs", "5"], longer, epoch=3)
    names = sorted(p.name for p in (longer / "training-state").iterdir())
    assert names == ["epoch-0002.npz", "epoch-0003.npz"]  # the last two, never more


def test_no_readable_state_is_one_line(tmp_path, crashed_own):
    out = copied_run(crashed_own, tmp_path)
    state(out, 1).write_bytes(b"PK\x03\x04 not really a zip")
    result = run_here("train_gru.py", "--resume", out)
    assert result.returncode == 1, explain(result)
    assert result.stderr.strip().endswith("start again with --overwrite")
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr


def test_a_resume_on_changed_data_is_refused_unless_allowed(tmp_path, crashed_own):
    out, data = copied_run(crashed_own, tmp_path), tmp_path / "own.npz"
    arrays = dict(np.load(crashed_own[1]))
    arrays["x_train"][0] += 1.0
    np.savez(data, **arrays)
    result = run_here("train_gru.py", "--resume", out, "--data", data)
    assert result.returncode == 1 and "--allow-data-change" in result.stderr, explain(
        result
    )
    result = run_here(
        "train_gru.py", "--resume", out, "--data", data, "--allow-data-change"
    )
    assert result.returncode == 0, explain(result)
    assert read_metrics(out)["epochs_run"] == 2


def test_other_arguments_on_an_unfinished_run_are_refused_in_one_line(
    tmp_path, crashed_own
):
    out = copied_run(crashed_own, tmp_path)
    args = ["--data", crashed_own[1], *OWN, "--output-dir", out]
    result = run_here("train_gru.py", *args, "--seed", "7")
    assert result.returncode == 2, explain(result)
    assert "--seed was 1, now 7" in result.stderr and f"--resume {out}" in result.stderr
    result = run_here("train_gru.py", "--resume", out, "--batch-size", "32")
    assert result.returncode == 2 and "--batch-size was 64, now 32" in result.stderr, (
        explain(result)
    )
    saved = json.loads((out / "args.json").read_text())
    saved["arguments"]["colour"] = "red"
    (out / "args.json").write_text(json.dumps(saved))
    result = run_here("train_gru.py", "--resume", out)
    assert result.returncode == 2 and "unknown argument 'colour'" in result.stderr, (
        explain(result)
    )
    assert result.stderr.count("\n") == 1


def test_another_backend_from_the_environment_is_refused_on_an_unfinished_run(
    tmp_path, crashed_own
):
    out = copied_run(crashed_own, tmp_path)
    args = ["--data", crashed_own[1], *OWN, "--output-dir", out]
    result = run_script("train_gru.py", *args, env={"KERAS_BACKEND": "jax"})
    assert result.returncode == 2, explain(result)
    assert "--backend was tensorflow, now jax" in result.stderr


def test_the_last_backend_flag_is_the_one_used_and_recorded(tmp_path):
    args = [*SECONDS, "--backend", "jax", "--backend", "tensorflow"]
    result = run_here("train_gru.py", *args, "--output-dir", tmp_path / "r")
    assert result.returncode == 0, explain(result)
    assert result.stdout.startswith("backend tensorflow ")
    assert read_metrics(tmp_path / "r")["backend"] == "tensorflow"


def test_every_flag_that_may_change_on_resume_changes_in_a_real_resume(
    tmp_path, crashed_own
):
    out, moved = copied_run(crashed_own, tmp_path), tmp_path / "moved" / "own.npz"
    moved.parent.mkdir()
    # the same data elsewhere: the fingerprint decides
    shutil.copy(crashed_own[1], moved)
    changes = {
        "--epochs": "3",
        "--learning-rate": "0.002",
        "--clipnorm": "2.0",
        "--cpu-threads": "1",
        "--fused-kernels": "off",
        "--data": str(moved),
        "--export": "saved_model",
    }
    argv = [a for pair in changes.items() for a in pair]
    argv += ["--tensorboard", "--verbose", "--allow-data-change"]
    result = run_here("train_gru.py", "--resume", out, *argv)
    assert result.returncode == 0, explain(result)
    changed = json.loads((out / "args.json").read_text())["changes"][-1]["changed"]
    assert set(changed) == {
        "epochs",
        "learning_rate",
        "clipnorm",
        "cpu_threads",
        "fused_kernels",
        "data",
        "export",
        "tensorboard",
        "verbose",
        "allow_data_change",
    }
    assert [r["epoch"] for r in read_history(out)] == [1, 2, 3]  # extended from 2 epochs
    assert (out / "logs").is_dir() and (out / "export" / "saved_model").is_dir()
    assert read_metrics(out)["settings_in_effect"]["fused_kernels"] == {}


def test_a_resume_reads_the_saved_preprocessing_and_does_not_fit_it_again(
    tmp_path, crashed_own
):
    out, data = copied_run(crashed_own, tmp_path), tmp_path / "other.npz"
    saved = (out / "preprocessing.json").read_text()
    arrays = dict(np.load(crashed_own[1]))
    arrays["x_train"] = arrays["x_train"] * 3 + 5  # other statistics, if fitted again
    np.savez(data, **arrays)
    result = run_here(
        "train_gru.py", "--resume", out, "--data", data, "--allow-data-change"
    )
    assert result.returncode == 0, explain(result)
    assert (out / "preprocessing.json").read_text() == saved


def test_a_run_folder_belongs_to_its_script_and_its_model(tmp_path, crashed_own):
    from helpers import copy_script

    out = copied_run(crashed_own, tmp_path)
    args = ["--data", crashed_own[1], *OWN, "--output-dir", out]
    other = run_here("train_lstm.py", *args)
    assert other.returncode == 1 and other.stderr.count("\n") == 1, explain(other)
    assert (
        f"holds a run of train_gru.py, not of train_lstm.py; resume it with "
        f"python train_gru.py --resume {out}" in other.stderr
    )
    assert "--overwrite" not in other.stderr
    backwards = copy_script(
        "train_gru.py",
        tmp_path,
        lambda s: s.replace(
            "layers.GRU(units, return_sequences=more)",
            "layers.GRU(units, return_sequences=more, go_backwards=True)",
        ),
    )
    assert "go_backwards=True" in backwards.read_text()
    changed = run_here(backwards, "--resume", out, cwd=tmp_path)
    assert (
        changed.returncode == 1 and "holds a run of another model" in changed.stderr
    ), explain(changed)
    assert "--overwrite" not in changed.stderr and changed.stderr.count("\n") == 1
    assert run_here("train_gru.py", "--resume", out).returncode == 0  # the run is intact


def test_a_run_on_texts_read_from_disk_resumes_exactly(tmp_path):
    from files import write_sentences_csv

    write_sentences_csv(tmp_path / "s.csv", count=300)
    args = ["--data", tmp_path / "s.csv", "--epochs", "2", "--units", "4"]
    args += ["--max-length", "12"]
    whole = run_here("train_imdb_bilstm.py", *args, "--output-dir", tmp_path / "whole")
    assert whole.returncode == 0, explain(whole)
    run_until_epoch("train_imdb_bilstm.py", args, tmp_path / "resumed")
    shutil.copytree(tmp_path / "resumed", tmp_path / "changed")
    resumed = run_here("train_imdb_bilstm.py", "--resume", tmp_path / "resumed")
    assert resumed.returncode == 0 and "after epoch 1" in resumed.stdout, explain(
        resumed
    )
    assert_same_training(tmp_path / "resumed", tmp_path / "whole")
    write_sentences_csv(tmp_path / "s.csv", count=300, seed=5)  # other texts, same name
    refused = run_here("train_imdb_bilstm.py", "--resume", tmp_path / "changed")
    assert refused.returncode == 1 and "--allow-data-change" in refused.stderr, explain(
        refused
    )


# --------------------------------------------------------------------------------------
# On JAX and torch: a process of each trains, stops dead after epoch 1 and resumes with
# another backend in the environment
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", [b for b in ("jax", "torch") if importable(b)])
def test_a_resumed_run_equals_an_uninterrupted_one_and_keeps_its_backend_on(
    backend, tmp_path
):
    from helpers import run_in_one_process

    args = [
        "--dataset",
        "mnist-sample",
        "--limit",
        "300",
        "--epochs",
        "2",
        "--units",
        "8",
    ]
    args += ["--num-layers", "1", "--seed", "7", "--backend", backend]
    other = "torch" if backend == "jax" else "jax"
    whole, _, resumed = run_in_one_process(
        ("train_gru.py", [*args, "--output-dir", tmp_path / "whole"]),
        (
            "train_gru.py",
            [*args, "--output-dir", tmp_path / "resumed"],
            {"until_epoch": 1},
        ),
        (
            "train_gru.py",
            ["--resume", tmp_path / "resumed"],
            {"env": {"KERAS_BACKEND": other}},
        ),
    )
    assert whole.returncode == 0, explain(whole)
    assert resumed.returncode == 0 and "after epoch 1" in resumed.stdout, explain(
        resumed
    )
    assert resumed.stdout.startswith(f"backend {backend} ")
    metrics = read_metrics(tmp_path / "resumed")
    assert metrics["backend"] == backend == metrics["arguments"]["backend"]
    assert_same_training(tmp_path / "resumed", tmp_path / "whole")


def test_a_finished_run_extended_with_more_epochs_equals_a_longer_run(
    tmp_path, uninterrupted
):
    out = tmp_path / "run"
    two = run_here("train_lstm.py", *TINY, "--epochs", "2", "--output-dir", out)
    assert two.returncode == 0, explain(two)
    again = run_here("train_lstm.py", "--resume", out)
    assert again.returncode == 2 and again.stderr.count("\n") == 1, explain(again)
    assert (
        f"{out} holds a finished run of 2 epoch(s); --resume {out} --epochs N (more than 2) continues it"
        in again.stderr
    )
    longer = run_here("train_lstm.py", "--resume", out, "--epochs", "3")
    assert longer.returncode == 0 and f"resuming {out} after epoch 2" in longer.stdout, (
        explain(longer)
    )
    assert_same_training(out, uninterrupted)
    assert (
        read_metrics(out)["epochs_run"] == 3
        and read_metrics(out)["resumed_after_epoch"] == 2
    )
