"""The run folder: one run owns it, default names never collide, a full disk or a failed write
anywhere is one line that keeps the last good state, and the checks made before training.

A lock held by another process, two processes racing for a name, a kernel's file-size
limit and the backend's process-wide settings need processes of their own; the rest runs
in this test process (helpers.run_here), a failed write at every write a real run makes.
"""

import errno
import json
import resource
import shutil
import signal
import sys

import numpy as np
import pytest
from test_resume import LONG, SECONDS, wait_for

from files import write_mnist_npz
from helpers import (
    copy_script,
    explain,
    memory_limit,
    read_history,
    read_metrics,
    run_here,
    run_script,
    start_script,
)
from rnn_scripts.rundir import RunDir

TINY = ["--dataset", "mnist-sample", "--limit", "120", "--units", "8", "--epochs", "2"]
TINY += ["--num-layers", "1"]
ORIGINAL_WRITE = RunDir.write


def partial_files(folder):
    return [p for p in folder.rglob("*") if ".partial" in p.name]


# --------------------------------------------------------------------------------------
# One run per folder
# --------------------------------------------------------------------------------------
def test_a_live_run_keeps_its_folder_from_a_second_run_and_from_an_overwrite(tmp_path):
    """The live run is itself an --overwrite of a finished run: it holds the lock while it
    clears the folder and trains, and another run, with or without --overwrite, is refused
    naming the holder."""
    out = tmp_path / "run"
    done = run_here("train_lstm.py", *SECONDS, "--output-dir", out)
    assert done.returncode == 0, explain(done)
    live = start_script("train_lstm.py", *LONG, "--overwrite", "--output-dir", out)
    try:
        # cleared, training
        wait_for(out / "history.csv", live, gone=out / "metrics.json")
        for extra in ([], ["--overwrite"]):
            second = run_here(
                "train_lstm.py", *TINY, "--seed", "7", *extra, "--output-dir", out
            )
            assert second.returncode == 1, explain(second)
            assert f"{out} is in use by another run (pid {live.pid} on " in second.stderr
            assert "train_lstm.py" in second.stderr and second.stderr.count("\n") == 1
        assert (out / "training-state").is_dir()  # the live run's state is untouched
        saved = json.loads((out / "args.json").read_text())
        assert saved["arguments"]["seed"] == 1 and saved["argv"][0] == "--synthetic"
        assert saved["script"] == "train_lstm.py"
    finally:
        live.send_signal(signal.SIGTERM)
        live.communicate(timeout=120)
    assert live.returncode == 143


def test_a_finished_run_is_kept_unless_overwrite_then_replaced_whole(tmp_path):
    out = tmp_path / "run"
    first = run_here("train_gru.py", *SECONDS, "--tensorboard", "--output-dir", out)
    assert first.returncode == 0, explain(first)
    before, history = (out / "metrics.json").read_text(), read_history(out)
    again = run_here("train_gru.py", *SECONDS, "--output-dir", out)
    assert again.returncode == 1 and again.stderr.count("\n") == 1, explain(again)
    assert (
        "already holds a finished run" in again.stderr and "--overwrite" in again.stderr
    )
    assert (out / "metrics.json").read_text() == before
    args = [*SECONDS, "--seed", "3", "--overwrite", "--output-dir", out]
    replaced = run_here("train_gru.py", *args)
    assert replaced.returncode == 0, explain(replaced)
    metrics = read_metrics(out)
    assert metrics["arguments"]["seed"] == 3 and metrics["resumed_after_epoch"] is None
    # another seed, another run
    assert read_history(out)[0]["loss"] != history[0]["loss"]
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
        env = {"TF_CONFIG": json.dumps(config)}
        result = run_here("train_gru.py", *SECONDS, "--output-dir", out, env=env)
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

    args = [*TINY, "--units", "32", "--output-dir", out]
    result = run_script("train_lstm.py", *args, preexec_fn=limit)
    assert result.returncode == 1, explain(result)
    assert result.stderr == (
        f"error: could not write {out / 'best.keras'}: File too large; no epoch had "
        "finished, nothing to resume\n"
    )
    assert partial_files(out) == [] and not (out / "best.keras").exists()


WRITES = [
    "args.json",
    "preprocessing.json",
    "best.keras",
    "training-state/epoch-0001.npz",
    "history.csv",
    "curves.png",
    "training-state/epoch-0002.npz",
    "history.csv",
    "curves.png",
    "model.keras",
    "confusion.png",
    "samples.png",
    "metrics.json",
]


def recorded_writes(monkeypatch, fail_at=None):
    """RunDir.write, recording each file's name; the write number `fail_at` finds the
    disk full once its partial file is half written."""
    calls, original = [], RunDir.write

    def write(self, name, write_to):
        calls.append(name)
        if len(calls) - 1 != fail_at:
            return original(self, name, write_to)

        def half_then_full(path):
            path.write_bytes(b"half")  # the partial file exists when the disk fills up
            raise OSError(errno.ENOSPC, "No space left on device")

        return original(self, name, half_then_full)

    monkeypatch.setattr(RunDir, "write", write)
    return calls


def test_the_list_of_writes_is_what_a_run_writes(tmp_path, monkeypatch):
    written = recorded_writes(monkeypatch)
    result = run_here(
        "train_lstm.py", *TINY, "--seed", "4", "--output-dir", tmp_path / "r"
    )
    assert result.returncode == 0, explain(result)
    assert written == WRITES  # epoch 2 did not beat epoch 1's accuracy: no best.keras


@pytest.mark.parametrize("failing", range(len(WRITES)))
def test_a_full_disk_at_any_write_is_one_line_keeps_the_last_state_and_resumes(
    tmp_path, monkeypatch, failing
):
    out = tmp_path / "run"
    recorded_writes(monkeypatch, fail_at=failing)
    args = [*TINY, "--seed", "4", "--output-dir", out]
    result = run_here("train_lstm.py", *args)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, explain(result)
    expected = (
        f"error: could not write {out / WRITES[failing]}: No space left on device; "
    )
    assert result.stderr.startswith(expected)
    assert partial_files(out) == []
    states = sorted((out / "training-state").glob("*.npz")) if out.exists() else []
    assert len(states) == min(
        2, sum(w.startswith("training-state") for w in WRITES[:failing])
    )
    if not states:  # no epoch had finished: the refused start left nothing behind
        assert not out.exists()
        return
    monkeypatch.setattr(RunDir, "write", ORIGINAL_WRITE)  # the disk has room again
    result = run_here("train_lstm.py", *args)
    assert result.returncode == 0, explain(result)
    assert [r["epoch"] for r in read_history(out)] == [1, 2]


def test_too_little_free_space_is_refused_before_the_data_load(tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(
        shutil, "disk_usage", lambda path: usage._replace(free=100 * 2**20)
    )
    result = run_here("train_lstm.py", *TINY, "--output-dir", tmp_path / "r")
    assert result.returncode == 1
    assert result.stderr.startswith("error: only 100 MiB free in ")
    assert "about 256 MiB" in result.stderr and "data mnist" not in result.stdout


def test_unwritable_output_dir_fails_before_loading_data(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_here("train_lstm.py", "--output-dir", blocker / "run", cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot write to output directory" in result.stderr
    assert "data mnist" not in result.stdout


def test_bad_data_file_fails_in_one_line_and_writes_nothing_outside_it(tmp_path):
    data_dir, cwd = tmp_path / "data", tmp_path / "cwd"
    data_dir.mkdir(), cwd.mkdir()
    write_mnist_npz(
        data_dir / "mnist.npz", test=0, x_test=np.zeros((0, 28, 28), "uint8")
    )
    out = cwd / "nested" / "out"
    result = run_here(
        "train_lstm.py", "--data-dir", data_dir, "--output-dir", out, cwd=cwd
    )
    assert result.returncode == 1, explain(result)
    expected = f"error: {data_dir / 'mnist.npz'}: the test split has no examples\n"
    assert result.stderr == expected
    assert list(cwd.iterdir()) == [] and [p.name for p in data_dir.iterdir()] == [
        "mnist.npz"
    ]
    default = run_here("train_lstm.py", "--data-dir", data_dir, cwd=cwd)
    assert default.returncode == 1 and list(cwd.iterdir()) == []  # no empty runs/ either


def test_a_model_too_large_for_memory_is_one_line(tmp_path):
    huge = lambda s: s.replace(  # noqa: E731
        "model.add(layers.Dense(outputs,",
        "model.add(layers.Dense(2**36))\n    model.add(layers.Dense(outputs,",
    )
    script = copy_script("train_lstm.py", tmp_path, huge, "train_huge.py")
    with memory_limit(
        2 * 2**30
    ):  # the 256 GiB layer fails at once, whatever the machine
        result = run_here(script, *SECONDS, cwd=tmp_path)
    assert result.returncode == 1, explain(result)
    assert result.stderr.startswith("error: out of memory at --batch-size 64 (")
    assert (
        result.stderr.count("\n") == 1 and "try a smaller --batch-size" in result.stderr
    )


# --------------------------------------------------------------------------------------
# Flags read back from the libraries, through a real run (TensorFlow's threads and
# determinism are fixed for a process once it runs an op)
# --------------------------------------------------------------------------------------
def test_hardware_flags_take_effect_as_the_libraries_report(tmp_path):
    out = tmp_path / "run"
    args = ["--deterministic", "--cpu-threads", "2", "--mixed-precision", "bfloat16"]
    args += ["--steps-per-execution", "3", "--output-dir", out]
    result = run_script("train_gru.py", *SECONDS, *args)
    assert result.returncode == 0, explain(result)
    settings = read_metrics(out)["settings_in_effect"]
    assert settings["tensorflow_op_determinism"] is True
    assert settings["cpu_threads_per_op"] == 2 and settings["steps_per_execution"] == 3
    assert settings["compute_dtype"] == "bfloat16"


def test_run_puts_back_the_dtype_policy_and_keras_own_functions(tmp_path):
    """A notebook that calls run() and then builds its own model gets Keras as it was:
    no mixed-precision policy and no speed-up left installed; and its own signal
    handlers back."""
    import signal

    import keras
    from keras.src.layers.rnn.gru import GRUCell

    def notebooks_own(signum, frame):
        pass

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    before = {s: signal.signal(s, notebooks_own) for s in signals}
    try:
        args = ["--mixed-precision", "bfloat16", "--output-dir", tmp_path / "r"]
        result = run_here("train_gru.py", *SECONDS, *args)
        assert {s: signal.getsignal(s) for s in signals} == dict.fromkeys(
            signals, notebooks_own
        )
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    assert result.returncode == 0, explain(result)
    assert (
        read_metrics(tmp_path / "r")["settings_in_effect"]["compute_dtype"] == "bfloat16"
    )
    assert read_metrics(tmp_path / "r")["settings_in_effect"]["fused_kernels"] == {
        "gru_split_cell": "active"
    }
    assert keras.config.dtype_policy().name == "float32"
    assert not hasattr(GRUCell.call, "__wrapped__")  # Keras' own, not the split form
    assert "common" in sys.modules  # the same process: nothing restarted


def test_overwrite_never_empties_a_folder_that_holds_no_run(tmp_path):
    """--output-dir . --overwrite in a folder of one's own data: refused, nothing removed;
    a run's folder with a file of the user's in it: the run's files go, the user's stays."""
    (tmp_path / "my-data.npz").write_bytes(b"precious")
    (tmp_path / "notes").mkdir()
    result = run_here(
        "train_gru.py", *SECONDS, "--output-dir", ".", "--overwrite", cwd=tmp_path
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1, explain(result)
    assert (
        "holds no run but other files (my-data.npz, ...); --overwrite replaces a run only"
        in result.stderr
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-data.npz", "notes"]
    out = tmp_path / "run"
    assert run_here("train_gru.py", *SECONDS, "--output-dir", out).returncode == 0
    (out / "my-notes.txt").write_text("mine")
    again = run_here(
        "train_gru.py", *SECONDS, "--seed", "2", "--overwrite", "--output-dir", out
    )
    assert again.returncode == 0, explain(again)
    assert (out / "my-notes.txt").read_text() == "mine" and read_metrics(out)[
        "arguments"
    ]["seed"] == 2
