"""The run folder: one run owns it, default names never collide, a full disk or a failed write
anywhere is one line that keeps the last good state, and the checks made before training.

Slow by design (every run of the suite ends with this file's seconds): two real processes on
one folder, and a failed write at every write a real run makes (one training run per write).
"""

import errno
import importlib
import json
import os
import resource
import signal
import sys

import numpy as np
import pytest
from test_resume import SECONDS, wait_for

import common
from files import write_mnist_npz
from helpers import (
    copy_script,
    explain,
    importable,
    read_history,
    read_metrics,
    run_script,
    start_script,
)
from rnn_scripts.rundir import RunDir

TINY = ["--dataset", "mnist-sample", "--limit", "120", "--units", "8", "--epochs", "2"]


def run_in_process(script, argv, capsys):
    """common.run as a notebook calls it, in this process: (exit code, stdout, stderr).
    run() must give back the signal handlers, streams and environment it found."""
    handlers = {
        s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    streams, environment = (sys.stdout, sys.stderr), dict(os.environ)
    code = 0
    try:
        common.run(
            importlib.import_module(script).build_model,
            reads="sequences",
            epochs=10,
            argv=argv,
        )
    except SystemExit as exit_info:
        code = exit_info.code
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    assert (sys.stdout, sys.stderr) == streams and dict(os.environ) == environment
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def partial_files(folder):
    return [p for p in folder.rglob("*") if ".partial" in p.name]


# --------------------------------------------------------------------------------------
# One run per folder
# --------------------------------------------------------------------------------------
def test_a_second_run_or_an_overwrite_of_a_live_run_is_refused_naming_the_holder(
    tmp_path,
):
    out = tmp_path / "run"
    first = start_script("train_lstm.py", *TINY, "--epochs", "30", "--output-dir", out)
    try:
        wait_for(out / "training-state" / "epoch-0001.npz", first)
        for extra in ([], ["--overwrite"]):
            second = run_script(
                "train_gru.py", *TINY, "--seed", "7", *extra, "--output-dir", out
            )
            assert second.returncode == 1, explain(second)
            assert (
                f"{out} is in use by another run (pid {first.pid} on " in second.stderr
            )
            assert "train_lstm.py" in second.stderr and second.stderr.count("\n") == 1
        assert (out / "training-state").is_dir()  # the live run's state is untouched
        saved = json.loads((out / "args.json").read_text())
        assert saved["arguments"]["seed"] == 1 and saved["argv"][0] == "--dataset"
    finally:
        first.terminate()
        first.communicate(timeout=120)
    assert first.returncode == 143


def test_a_finished_run_is_kept_unless_overwrite_then_replaced_whole(tmp_path):
    out = tmp_path / "run"
    first = run_script("train_gru.py", *SECONDS, "--tensorboard", "--output-dir", out)
    assert first.returncode == 0, explain(first)
    before, history = (out / "metrics.json").read_text(), read_history(out)
    again = run_script("train_gru.py", *SECONDS, "--output-dir", out)
    assert again.returncode == 1 and again.stderr.count("\n") == 1, explain(again)
    assert (
        "already holds a finished run" in again.stderr and "--overwrite" in again.stderr
    )
    assert (out / "metrics.json").read_text() == before
    replaced = run_script(
        "train_gru.py", *SECONDS, "--seed", "3", "--overwrite", "--output-dir", out
    )
    assert replaced.returncode == 0, explain(replaced)
    metrics = read_metrics(out)
    assert metrics["arguments"]["seed"] == 3 and metrics["resumed_after_epoch"] is None
    assert (
        read_history(out)[0]["loss"] != history[0]["loss"]
    )  # another seed, another run
    assert not (out / "logs").exists()  # the old run's TensorBoard logs went with it
    assert json.loads((out / "args.json").read_text())["arguments"]["seed"] == 3


def test_a_state_that_does_not_read_back_replaces_nothing(tmp_path, monkeypatch):
    run = RunDir(tmp_path)
    run.save_state(1, [np.ones(3)], [np.zeros(2)], {"epoch": 1})

    def torn_write(stream, **arrays):  # what a failing disk or a full quota can leave
        stream.write(b"PK\x03\x04 not a whole archive")

    monkeypatch.setattr(np, "savez", torn_write)
    with pytest.raises(OSError, match="did not read back"):
        run.save_state(2, [np.ones(3)], [np.zeros(2)], {"epoch": 2})
    assert [p.name for p in run.states()] == ["epoch-0001.npz"]
    assert sorted(p.name for p in (tmp_path / "training-state").iterdir()) == [
        "epoch-0001.npz"
    ]


def test_an_overwrite_keeps_the_lock_while_it_runs(tmp_path):
    out = tmp_path / "run"
    done = run_script("train_gru.py", *SECONDS, "--output-dir", out)
    assert done.returncode == 0, explain(done)
    rewriting = start_script(
        "train_gru.py",
        "--synthetic",
        "--limit",
        "600",
        "--units",
        "4",
        "--epochs",
        "3",
        "--overwrite",
        "--output-dir",
        out,
    )
    try:
        wait_for(out / "training-state" / "epoch-0001.npz", rewriting)
        second = run_script("train_gru.py", *SECONDS, "--overwrite", "--output-dir", out)
        assert (
            second.returncode == 1 and "is in use by another run (pid" in second.stderr
        ), explain(second)
    finally:
        rewriting.kill()
        rewriting.communicate()


def test_two_runs_started_together_without_output_dir_get_two_folders(tmp_path):
    runs = [start_script("train_gru.py", *SECONDS, cwd=tmp_path) for _ in range(2)]
    for process in runs:
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all((f / "metrics.json").is_file() for f in folders)


def test_default_folder_names_in_one_second_differ(tmp_path):
    names = {RunDir.new("train_x", parent=tmp_path).path.name for _ in range(3)}
    assert len(names) == 3


def test_a_stray_tf_config_moves_nothing(tmp_path):
    configs = [
        {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}},
        {"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "one"}},
    ]
    for number, config in enumerate(configs):
        out = tmp_path / f"run{number}"
        result = run_script(
            "train_gru.py",
            *SECONDS,
            "--output-dir",
            out,
            env={"TF_CONFIG": json.dumps(config)},
        )
        assert result.returncode == 0, explain(result)
        assert read_metrics(out)["epochs_run"] == 1


# --------------------------------------------------------------------------------------
# Writes that fail
# --------------------------------------------------------------------------------------
def test_a_file_size_limit_mid_run_is_one_line_with_no_partial_file(tmp_path):
    """A real write failure: the kernel refuses to grow any file past 40 kB (EFBIG), as
    a full disk refuses (ENOSPC); best.keras is the first file that large."""
    out = tmp_path / "run"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))

    result = run_script(
        "train_lstm.py", *TINY, "--units", "32", "--output-dir", out, preexec_fn=limit
    )
    assert result.returncode == 1, explain(result)
    assert (
        result.stderr
        == f"error: could not write {out / 'best.keras'}: File too large; no epoch had finished, nothing to resume\n"
    )
    assert partial_files(out) == [] and not (out / "best.keras").exists()


@pytest.fixture(scope="module")
def write_count():
    """How many files a 2-epoch run writes (each through RunDir.write)."""
    return len(WRITES)


WRITES = [
    "args.json", "preprocessing.json",
    "best.keras", "training-state/epoch-0001.npz", "history.csv", "curves.png",
    "training-state/epoch-0002.npz", "history.csv", "curves.png",
    "model.keras", "history.csv", "curves.png", "confusion.png", "samples.png", "metrics.json",
]  # fmt: skip


def test_the_list_of_writes_is_what_a_run_writes(tmp_path, capsys, monkeypatch):
    written = []
    original = RunDir.write

    def recording(self, name, write_to):
        written.append(name)
        return original(self, name, write_to)

    monkeypatch.setattr(RunDir, "write", recording)
    code, out, err = run_in_process(
        "train_lstm", [*TINY, "--seed", "4", "--output-dir", tmp_path / "r"], capsys
    )
    assert code == 0, err
    assert (
        written == WRITES
    )  # epoch 2 did not beat epoch 1's validation accuracy: no best.keras


@pytest.mark.parametrize("failing", range(len(WRITES)))
def test_a_full_disk_at_any_write_is_one_line_keeps_the_last_state_and_resumes(
    tmp_path, capsys, monkeypatch, failing
):
    out = tmp_path / "run"
    calls, original = [], RunDir.write

    def disk_full_once(self, name, write_to):
        calls.append(name)
        if len(calls) - 1 != failing:
            return original(self, name, write_to)

        def half_then_full(path):
            path.write_bytes(b"half")  # the partial file exists when the disk fills up
            raise OSError(errno.ENOSPC, "No space left on device")

        return original(self, name, half_then_full)

    monkeypatch.setattr(RunDir, "write", disk_full_once)
    argv = [*TINY, "--seed", "4", "--output-dir", out]
    code, _, err = run_in_process("train_lstm", argv, capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(
        f"error: could not write {out / WRITES[failing]}: No space left on device; "
    )
    assert partial_files(out) == []
    states = (
        sorted((out / "training-state").glob("*.npz"))
        if (out / "training-state").exists()
        else []
    )
    assert len(states) == min(
        2, sum(w.startswith("training-state") for w in WRITES[:failing])
    )
    if failing == 0:
        return  # args.json was never written: nothing to resume, nothing left behind
    monkeypatch.setattr(RunDir, "write", original)
    code, _, err = run_in_process("train_lstm", argv, capsys)
    assert code == 0, err
    assert [r["epoch"] for r in read_history(out)] == [1, 2]


def test_too_little_free_space_is_refused_before_the_data_load(
    tmp_path, capsys, monkeypatch
):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(
        shutil, "disk_usage", lambda path: usage._replace(free=100 * 2**20)
    )
    code, out, err = run_in_process(
        "train_lstm", [*TINY, "--output-dir", tmp_path / "r"], capsys
    )
    assert code == 1
    assert err.startswith("error: only 100 MiB free in ") and "about 256 MiB" in err
    assert "data mnist" not in out


def test_unwritable_output_dir_fails_before_loading_data(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_script("train_lstm.py", "--output-dir", blocker / "run", cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot write to output directory" in result.stderr
    assert "data mnist" not in result.stdout


def test_bad_data_file_fails_in_one_line_and_writes_only_in_the_output_dir(tmp_path):
    data_dir, out, cwd = tmp_path / "data", tmp_path / "out", tmp_path / "cwd"
    data_dir.mkdir(), cwd.mkdir()
    write_mnist_npz(
        data_dir / "mnist.npz", test=0, x_test=np.zeros((0, 28, 28), "uint8")
    )
    result = run_script(
        "train_lstm.py", "--data-dir", data_dir, "--output-dir", out, cwd=cwd
    )
    assert result.returncode == 1, explain(result)
    assert (
        result.stderr
        == f"error: {data_dir / 'mnist.npz'}: the test split has no examples\n"
    )
    assert list(cwd.iterdir()) == [] and [p.name for p in data_dir.iterdir()] == [
        "mnist.npz"
    ]


def test_a_model_too_large_for_memory_is_one_line(tmp_path):
    huge = lambda s: s.replace(
        "model.add(layers.Dense(outputs,",
        "model.add(layers.Dense(2**36))\n    model.add(layers.Dense(outputs,",
    )  # noqa: E731
    script = copy_script("train_lstm.py", tmp_path, huge, "train_huge.py")
    result = run_script(script, *SECONDS, cwd=tmp_path)
    assert result.returncode == 1, explain(result)
    assert result.stderr.startswith("error: out of memory at --batch-size 64 (")
    assert (
        result.stderr.count("\n") == 1 and "try a smaller --batch-size" in result.stderr
    )


# --------------------------------------------------------------------------------------
# Flags read back from the libraries, through real runs
# --------------------------------------------------------------------------------------
def test_hardware_flags_take_effect_as_the_libraries_report(tmp_path):
    out = tmp_path / "run"
    result = run_script(
        "train_gru.py", *SECONDS, "--deterministic", "--cpu-threads", "2",
        "--mixed-precision", "bfloat16", "--steps-per-execution", "3", "--output-dir", out,
    )  # fmt: skip
    assert result.returncode == 0, explain(result)
    settings = read_metrics(out)["settings_in_effect"]
    assert settings["tensorflow_op_determinism"] is True
    assert settings["cpu_threads_per_op"] == 2 and settings["steps_per_execution"] == 3
    assert settings["compute_dtype"] == "bfloat16"


def test_keras_backend_variable_is_the_default_backend(tmp_path):
    if not importable("jax"):
        pytest.skip("jax is not installed")
    out = tmp_path / "run"
    result = run_script(
        "train_gru.py", *SECONDS, "--output-dir", out, env={"KERAS_BACKEND": "jax"}
    )
    assert result.returncode == 0, explain(result)
    metrics = read_metrics(out)
    assert (
        metrics["backend"] == "jax"
        and metrics["settings_in_effect"]["jax_gpu_preallocation"] is False
    )
