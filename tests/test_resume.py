"""Interruptions, resuming, numerical faults, bad files and reproducibility (real runs)."""

import json
import signal
import time

import numpy as np
import pytest

import common
from helpers import explain, read_history, read_metrics, run_script, start_script

# Small enough to run in seconds, big enough for three real epochs of 9 batches each.
TINY = [
    "--dataset",
    "mnist-sample",
    "--limit",
    "600",
    "--epochs",
    "3",
    "--units",
    "32",
    "--seed",
    "7",
]

# A run of a few seconds, for what does not depend on real data.
SECONDS = ["--synthetic", "--limit", "120", "--epochs", "1", "--units", "4"]


def wait_for_first_epoch(process, out, timeout=300):
    state = out / "training-state" / "epoch-0001.keras"
    deadline = time.monotonic() + timeout
    while not state.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no epoch finished in time"
        time.sleep(0.05)


def final_weights(out):
    import keras

    return keras.saving.load_model(out / "model.keras", safe_mode=True).get_weights()


def without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = run_script("train_lstm.py", *TINY, "--output-dir", out)
    assert result.returncode == 0, explain(result)
    return out


def test_sigkill_after_epoch_1_then_same_command_resumes_at_epoch_2(
    tmp_path, uninterrupted
):
    out = tmp_path / "run"
    process = start_script("train_lstm.py", *TINY, "--output-dir", out)
    wait_for_first_epoch(process, out)
    process.kill()  # SIGKILL: no handler runs
    process.wait()
    assert (out / "training-state").is_dir() and not (out / "metrics.json").exists()

    result = run_script("train_lstm.py", *TINY, "--output-dir", out)
    assert result.returncode == 0, explain(result)
    assert f"resuming {out} after epoch" in result.stdout
    metrics = read_metrics(out)
    assert metrics["resumed_from_epoch"] >= 2 and metrics["epochs_run"] == 3
    assert [r["epoch"] for r in read_history(out)] == [1, 2, 3]
    # Same seed, same (seed, epoch)-ordered batches, weights and Adam state restored: the
    # arithmetic is the same sequence of float32 operations on this CPU, so the results
    # agree to the last bit in practice; 1e-6 leaves room only for reduction-order rounding.
    assert without_seconds(read_history(out)) == without_seconds(
        read_history(uninterrupted)
    )
    for resumed, straight in zip(final_weights(out), final_weights(uninterrupted)):
        np.testing.assert_allclose(resumed, straight, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "sent, code, words",
    [
        (signal.SIGINT, 130, "interrupted (Ctrl-C)"),
        (signal.SIGTERM, 143, "terminated (SIGTERM)"),
    ],
)
def test_sigint_and_sigterm_keep_the_last_epoch_and_say_how_to_resume(
    tmp_path, sent, code, words
):
    out = tmp_path / "run"
    process = start_script("train_lstm.py", *TINY, "--output-dir", out)
    wait_for_first_epoch(process, out)
    process.send_signal(sent)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert stderr.strip().splitlines()[-1].startswith(words)
    assert f"resume with: python train_lstm.py --resume {out}" in stderr
    assert "Traceback" not in stderr
    assert list((out / "training-state").glob("epoch-*.keras"))
    if sent == signal.SIGTERM:  # and the printed command does resume it
        result = run_script("train_lstm.py", "--resume", out)
        assert result.returncode == 0, explain(result)
        assert read_metrics(out)["epochs_run"] == 3
        assert len(read_history(out)) == 3


def test_finished_run_is_not_overwritten_without_overwrite(tmp_path, uninterrupted):
    before = (uninterrupted / "metrics.json").read_text()
    result = run_script("train_lstm.py", *TINY, "--output-dir", uninterrupted)
    assert result.returncode == 1
    assert (
        "already holds a finished run" in result.stderr
        and "--overwrite" in result.stderr
    )
    assert (uninterrupted / "metrics.json").read_text() == before


def test_two_runs_with_the_same_seed_have_identical_histories(tmp_path, uninterrupted):
    again = tmp_path / "again"
    result = run_script("train_lstm.py", *TINY, "--output-dir", again)
    assert result.returncode == 0, explain(result)
    assert without_seconds(read_history(again)) == without_seconds(
        read_history(uninterrupted)
    )
    assert len(read_history(again)) == 3


def test_overwrite_replaces_a_finished_run(tmp_path):
    out = tmp_path / "run"
    assert run_script("train_gru.py", *SECONDS, "--output-dir", out).returncode == 0
    first = read_metrics(out)
    result = run_script(
        "train_gru.py", *SECONDS, "--output-dir", out, "--overwrite", "--seed", "3"
    )
    assert result.returncode == 0, explain(result)
    assert read_metrics(out)["arguments"]["seed"] == 3 != first["arguments"]["seed"]


def test_diverging_loss_stops_at_once_with_exit_1_and_one_line(tmp_path):
    out = tmp_path / "run"
    result = run_script(
        "train_simplernn.py", *TINY, "--learning-rate", "1e4", "--output-dir", out
    )
    assert result.returncode == 1
    message = result.stderr.strip()
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith("loss became nan at epoch 1, batch ")
    assert "try a lower --learning-rate" in message
    assert not (out / "metrics.json").exists()


def test_corrupted_checkpoint_is_a_one_line_error_naming_the_file(tmp_path):
    out = tmp_path / "run"
    (out / "training-state").mkdir(parents=True)
    (out / "args.json").write_text(
        json.dumps({"argv": TINY + ["--output-dir", str(out)]})
    )
    broken = out / "training-state" / "epoch-0002.keras"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    result = run_script("train_lstm.py", "--resume", out)
    assert result.returncode == 1
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert str(broken) in result.stderr and "Traceback" not in result.stderr


def test_resume_of_a_directory_without_a_run_is_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        common.parse_arguments(
            "t.py", None, {"epochs": 1, "units": 1}, "mnist", ["--resume", str(tmp_path)]
        )
    assert exit_info.value.code == 2
    assert "no run to resume" in capsys.readouterr().err


def test_bad_data_file_fails_in_one_line_and_writes_only_in_the_output_dir(tmp_path):
    data_dir, out, cwd = tmp_path / "data", tmp_path / "out", tmp_path / "cwd"
    data_dir.mkdir(), cwd.mkdir()
    np.savez(
        data_dir / "mnist.npz",
        x_train=np.zeros((5, 28, 28), np.float64),
        y_train=np.zeros(5, np.uint8),
        x_test=np.zeros((5, 28, 28), np.uint8),
        y_test=np.zeros(5, np.uint8),
    )
    result = run_script(
        "train_lstm.py", "--data-dir", data_dir, "--output-dir", out, cwd=cwd
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "mnist.npz" in result.stderr
    assert "uint8" in result.stderr and "Traceback" not in result.stderr
    assert list(cwd.iterdir()) == [] and sorted(p.name for p in data_dir.iterdir()) == [
        "mnist.npz"
    ]


def test_unwritable_output_dir_fails_before_loading_data(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_script("train_lstm.py", "--output-dir", blocker / "run", cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot write to output directory" in result.stderr
    assert "data mnist" not in result.stdout  # stopped before the data was loaded


def test_too_little_free_space_is_refused(tmp_path):
    with pytest.raises(common.UserError, match="MiB free"):
        common.check_free_space(tmp_path, 10**18)
    common.check_free_space(tmp_path, 1)


def test_out_of_memory_errors_are_recognised():
    assert common.is_out_of_memory(
        RuntimeError("RESOURCE_EXHAUSTED: OOM when allocating")
    )
    assert common.is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate"))
    assert not common.is_out_of_memory(ValueError("shapes do not match"))


def test_saved_models_load_in_safe_mode_only(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)])
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(common.UserError, match="lambda.keras"):
        common.load_saved_model(tmp_path / "lambda.keras")


def test_deterministic_flag_turns_on_op_determinism(tmp_path):
    result = run_script(
        "train_gru.py", *SECONDS, "--deterministic", "--output-dir", tmp_path / "r"
    )
    assert result.returncode == 0, explain(result)
    assert "op determinism on" in result.stdout and "slower" in result.stdout
