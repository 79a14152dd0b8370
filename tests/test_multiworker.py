"""--distribute multi-worker: two real processes on 127.0.0.1 (JAX, CPU, gloo), equal to a
one-process run over two devices; a lost, a signalled and an unreachable process.

Slow by design (every run of the suite ends with this file's seconds): each test starts two
real JAX processes that join over gloo (about a minute per pair).
"""

import signal
import socket
import time

import numpy as np
import pytest

from helpers import (
    explain,
    importable,
    load_model,
    read_history,
    read_metrics,
    run_script,
    start_script,
)

pytestmark = pytest.mark.skipif(not importable("jax"), reason="jax is not installed")
SMALL = [
    "--backend",
    "jax",
    "--dataset",
    "mnist-sample",
    "--limit",
    "130",
    "--units",
    "8",
    "--batch-size",
    "32",
    "--seed",
    "3",
]
OUTPUTS = {"args.json", "preprocessing.json", "model.keras", "best.keras", "history.csv",
           "metrics.json", "curves.png", "confusion.png", "samples.png"}  # fmt: skip


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_both(
    script,
    args,
    out,
    tmp_path,
    env=None,
    slurm=False,
    second_args=None,
    port=None,
    ids=(0, 1),
):
    """Process 1 first (it waits for the coordinator), then process 0; each in its own
    working folder, so that anything written outside --output-dir would show. With `slurm`,
    the three cluster flags are left out and the processes get what `srun` sets for two
    tasks on one node, as the README's SLURM script relies on."""
    port = port or free_port()
    processes = []
    for index in (1, 0):
        cwd = tmp_path / f"cwd{index}"
        cwd.mkdir(exist_ok=True)
        cluster = [
            "--coordinator",
            f"127.0.0.1:{port}",
            "--num-processes",
            "2",
            "--process-id",
            str(ids[index]),
        ]
        variables = dict(env or {})
        if slurm:
            cluster = []
            variables.update(SLURM_JOB_ID="4242", SLURM_STEP_NODELIST="localhost", SLURM_NTASKS="2",
                             SLURM_PROCID=str(index), SLURM_LOCALID="0", JAX_COORDINATOR_PORT=str(port))  # fmt: skip
        own = second_args if index == 1 and second_args is not None else args
        command = [*own, "--distribute", "multi-worker", *cluster, "--output-dir", out]
        processes.append(start_script(script, *command, cwd=cwd, env=variables))
    return processes[::-1]  # [process 0, process 1]


def finish(process, timeout=300):
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def weights(path):
    return load_model(path).get_weights()


# Two of the four MNIST scripts (they share the pipeline; each pair of processes takes about
# a minute on 2 cores): SimpleRNN as under SLURM, and the Bidirectional wrapper.
@pytest.mark.parametrize("script", ["train_simplernn.py", "train_bilstm.py"])
def test_two_processes_train_as_one_process_on_two_devices_and_one_writes(
    script, tmp_path
):
    out, slurm = (
        tmp_path / "shared",
        script == "train_simplernn.py",
    )  # one of them as under SLURM
    first, second = start_both(
        script, [*SMALL, "--epochs", "1"], out, tmp_path, slurm=slurm
    )
    (code0, stdout0, stderr0), (code1, stdout1, stderr1) = finish(first), finish(second)
    assert code0 == 0 and code1 == 0, stderr0[-2000:] + stderr1[-2000:]
    assert {p.name for p in out.iterdir()} == OUTPUTS
    assert (
        list((tmp_path / "cwd0").iterdir()) == list((tmp_path / "cwd1").iterdir()) == []
    )
    assert (
        "test accuracy" in stdout0 and "test accuracy" not in stdout1
    )  # one console speaks
    metrics = read_metrics(out)
    assert metrics["processes"] == 2 and metrics["replicas"] == 2
    reference = tmp_path / "reference"
    result = run_script(script, *SMALL, "--epochs", "1", "--distribute", "mirrored", "--output-dir", reference,
                        env={"RNN_SCRIPTS_CPU_DEVICES": "2"})  # fmt: skip
    assert result.returncode == 0, explain(result)
    for mine, theirs in zip(
        weights(out / "model.keras"), weights(reference / "model.keras")
    ):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-5)
    assert read_metrics(reference)["test_accuracy"] == pytest.approx(
        metrics["test_accuracy"], abs=1e-6
    )


def wait_for_state(out, processes, timeout=300):
    deadline = time.monotonic() + timeout
    while not (out / "training-state" / "epoch-0001.npz").exists():
        assert all(p.poll() is None for p in processes), [
            p.communicate() for p in processes
        ]
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_killed_process_stops_the_other_in_one_line_and_both_resume(tmp_path):
    out, args = tmp_path / "shared", [*SMALL, "--limit", "400", "--epochs", "3"]
    first, second = start_both("train_gru.py", args, out, tmp_path)
    wait_for_state(out, (first, second))
    second.kill()
    started = time.monotonic()
    code, _, stderr = finish(first, timeout=120)
    assert time.monotonic() - started < 60
    assert code == 1 and stderr.count("\n") == 1, stderr
    assert stderr.startswith("error: lost contact with process 1 of this run (")
    assert stderr.strip().endswith("start every process again to resume")
    second.communicate()
    first, second = start_both("train_gru.py", args, out, tmp_path)
    (code0, stdout0, stderr0), (code1, _, stderr1) = finish(first), finish(second)
    assert code0 == 0 and code1 == 0, stderr0[-2000:] + stderr1[-2000:]
    assert "resuming" in stdout0 and read_metrics(out)["resumed_after_epoch"] >= 1
    assert [r["epoch"] for r in read_history(out)] == [1, 2, 3]


def test_a_signal_to_one_process_stops_both_and_starting_both_again_resumes(tmp_path):
    out, args = tmp_path / "shared", [*SMALL, "--limit", "400", "--epochs", "4"]
    first, second = start_both("train_lstm.py", args, out, tmp_path)
    wait_for_state(out, (first, second))
    second.send_signal(signal.SIGINT)
    for process in (first, second):
        code, _, stderr = finish(process, timeout=120)
        assert code == 130, stderr
        assert stderr.startswith("interrupted (Ctrl-C); "), stderr
    assert (out / "training-state").is_dir() and not (out / "metrics.json").exists()
    kept = int(sorted((out / "training-state").glob("*.npz"))[-1].stem.split("-")[1])
    first, second = start_both("train_lstm.py", args, out, tmp_path)
    (code0, stdout0, stderr0), (code1, _, stderr1) = finish(first), finish(second)
    assert code0 == 0 and code1 == 0, stderr0[-2000:] + stderr1[-2000:]
    assert f"resuming {out} after epoch {kept}" in stdout0
    assert [r["epoch"] for r in read_history(out)] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "second_args, words",
    [
        (["--batch-size", "16"], "started with different --batch-size"),
        (["--epochs", "3"], "started with different --epochs"),
        (["--units", "4"], "started with different scripts or model flags"),
    ],
)
def test_processes_started_with_different_arguments_stop_in_one_line(
    tmp_path, second_args, words
):
    args = [*SMALL, "--epochs", "2"]
    first, second = start_both(
        "train_gru.py",
        args,
        tmp_path / "shared",
        tmp_path,
        second_args=[*args, *second_args],
    )
    started = time.monotonic()
    for process in (first, second):
        code, _, stderr = finish(process, timeout=120)
        assert code == 2 and words in stderr and stderr.count("\n") == 1, stderr[-2000:]
    assert time.monotonic() - started < 60


def test_processes_reading_different_data_stop_in_one_line(tmp_path):
    from files import write_sequences_npz

    write_sequences_npz(tmp_path / "a.npz", train=120, test=20)
    write_sequences_npz(
        tmp_path / "b.npz", train=120, test=20, y_train=np.arange(120) % 4
    )
    args = ["--backend", "jax", "--units", "4", "--batch-size", "32", "--epochs", "1"]
    # the same --data path, two different files behind it: each process has its own cwd
    for index, name in ((0, "a.npz"), (1, "b.npz")):
        (tmp_path / f"cwd{index}").mkdir()
        (tmp_path / f"cwd{index}" / "data.npz").write_bytes(
            (tmp_path / name).read_bytes()
        )
    first, second = start_both(
        "train_gru.py", [*args, "--data", "data.npz"], tmp_path / "shared", tmp_path
    )
    for process in (first, second):
        code, _, stderr = finish(process, timeout=180)
        assert code == 1 and "read different data" in stderr, stderr[-2000:]


def test_a_used_port_and_a_duplicate_process_id_are_one_line(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("0.0.0.0", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = run_script("train_gru.py", *SMALL, "--distribute", "multi-worker", "--coordinator", f"127.0.0.1:{port}",
                            "--num-processes", "2", "--process-id", "0", "--output-dir", tmp_path / "out", timeout=120)  # fmt: skip
    assert result.returncode == 2 and f"port {port} is in use" in result.stderr, explain(
        result
    )
    first, second = start_both(
        "train_gru.py",
        [*SMALL, "--epochs", "1"],
        tmp_path / "shared",
        tmp_path,
        ids=(1, 1),
        env={"RNN_SCRIPTS_JOIN_TIMEOUT": "20"},
    )
    outcomes = [finish(process, timeout=120) for process in (first, second)]
    assert any(
        code == 2
        and "--process-id 1 is taken by another process of this run (pid" in stderr
        for code, _, stderr in outcomes
    ), outcomes


def test_an_unreachable_coordinator_is_one_line_within_the_timeout(tmp_path):
    started = time.monotonic()
    result = run_script(
        "train_lstm.py", *SMALL, "--distribute", "multi-worker", "--coordinator", f"127.0.0.1:{free_port()}",
        "--num-processes", "2", "--process-id", "1", "--output-dir", tmp_path / "out",
        env={"RNN_SCRIPTS_JOIN_TIMEOUT": "4"}, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, explain(result)
    assert result.stderr.startswith(
        "error: process 1 could not join the others at 127.0.0.1:"
    )
    assert "within 4 s" in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 60 and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, words",
    [
        ([], "needs --coordinator, --num-processes and --process-id"),
        (
            [
                "--coordinator",
                "127.0.0.1:1",
                "--num-processes",
                "2",
                "--process-id",
                "0",
            ],
            None,
        ),
    ],
)
def test_multi_worker_without_what_it_needs_is_one_line(tmp_path, extra, words):
    argv = [*SMALL, "--distribute", "multi-worker", *extra]
    if words is None:  # no --output-dir: the folder must be shared
        words = "needs --output-dir, on storage every process sees"
    else:
        argv += ["--output-dir", tmp_path / "out"]
    result = run_script(
        "train_lstm.py",
        *argv,
        cwd=tmp_path,
        env={"RNN_SCRIPTS_JOIN_TIMEOUT": "20"},
        timeout=120,
    )
    assert result.returncode == 2, explain(result)
    assert words in result.stderr and result.stderr.count("\n") == 1
