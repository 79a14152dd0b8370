"""--distribute multi-worker: two real processes on 127.0.0.1 (JAX, CPU, gloo), equal to a
one-process run over two devices; a signalled, a lost and an unreachable process; processes
started unlike each other.

Every test here is about processes: each pair is two real JAX processes that join over
gloo, and a pair is started only where no single process can show the promise.
"""

import signal
import socket
import time

import numpy as np
import pytest

from helpers import (
    RUN_FILES,
    explain,
    importable,
    load_model,
    read_history,
    read_metrics,
    run_here,
    run_in_one_process,
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
]
SMALL += ["--num-layers", "1", "--batch-size", "32", "--seed", "3"]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_both(
    script, args, out, tmp_path, env=None, slurm=False, second_args=None, ids=(0, 1)
):
    """Process 1 first (it waits for the coordinator), then process 0; each in its own
    working folder, so that anything written outside --output-dir would show. With `slurm`,
    the three cluster flags are left out and the processes get what `srun` sets for two
    tasks on one node, as the README's SLURM script relies on."""
    port = free_port()
    processes = []
    for index in (1, 0):
        cwd = tmp_path / f"cwd{index}"
        cwd.mkdir(exist_ok=True)
        cluster = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
        cluster += ["--process-id", str(ids[index])]
        variables = dict(env or {})
        if slurm:
            cluster = []
            variables.update(
                SLURM_JOB_ID="4242",
                SLURM_STEP_NODELIST="localhost",
                SLURM_NTASKS="2",
                SLURM_PROCID=str(index),
                SLURM_LOCALID="0",
                JAX_COORDINATOR_PORT=str(port),
            )
        own = second_args if index == 1 and second_args is not None else args
        command = [*own, "--distribute", "multi-worker", *cluster, "--output-dir", out]
        processes.append(start_script(script, *command, cwd=cwd, env=variables))
    return processes[::-1]  # [process 0, process 1]


def finish(process, timeout=300):
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def test_two_processes_train_as_one_process_on_two_devices_and_one_writes(tmp_path):
    """Bidirectional LSTMs, the processes started as SLURM starts them."""
    out = tmp_path / "shared"
    first, second = start_both(
        "train_bilstm.py", [*SMALL, "--epochs", "1"], out, tmp_path, slurm=True
    )
    (code0, stdout0, stderr0), (code1, stdout1, stderr1) = finish(first), finish(second)
    assert code0 == 0 and code1 == 0, stderr0[-2000:] + stderr1[-2000:]
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert (
        list((tmp_path / "cwd0").iterdir()) == list((tmp_path / "cwd1").iterdir()) == []
    )
    assert "test accuracy" in stdout0 and "test accuracy" not in stdout1  # one console
    metrics = read_metrics(out)
    assert metrics["processes"] == 2 and metrics["replicas"] == 2
    reference = tmp_path / "reference"
    args = [
        *SMALL,
        "--epochs",
        "1",
        "--distribute",
        "mirrored",
        "--output-dir",
        reference,
    ]
    [result] = run_in_one_process(
        ("train_bilstm.py", args), env={"RNN_SCRIPTS_CPU_DEVICES": "2"}
    )
    assert result.returncode == 0, explain(result)
    mine, theirs = load_model(out / "model.keras"), load_model(reference / "model.keras")
    for a, b in zip(mine.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert read_metrics(reference)["test_accuracy"] == pytest.approx(
        metrics["test_accuracy"], abs=1e-6
    )


def wait_for_state(out, processes, epoch=1, timeout=300):
    deadline = time.monotonic() + timeout
    while not (out / "training-state" / f"epoch-{epoch:04d}.npz").exists():
        assert all(p.poll() is None for p in processes), [
            p.communicate() for p in processes
        ]
        assert time.monotonic() < deadline
        time.sleep(0.05)


def latest_state(out):
    return int(sorted((out / "training-state").glob("*.npz"))[-1].stem.split("-")[1])


def test_a_signalled_or_lost_process_stops_both_and_starting_both_again_resumes(
    tmp_path,
):
    """A signal to process 1 stops both at the same step (130); started again, they resume,
    and when process 1 is killed, process 0 says in one line that it lost it; started again,
    they resume and finish."""
    out, args = tmp_path / "shared", [*SMALL, "--limit", "250", "--epochs", "6"]
    first, second = start_both("train_lstm.py", args, out, tmp_path)
    wait_for_state(out, (first, second))
    second.send_signal(signal.SIGINT)
    for process in (first, second):
        code, _, stderr = finish(process, timeout=120)
        assert code == 130 and stderr.startswith("interrupted (Ctrl-C); "), stderr
    assert (out / "training-state").is_dir() and not (out / "metrics.json").exists()
    kept = latest_state(out)
    first, second = start_both("train_lstm.py", args, out, tmp_path)
    wait_for_state(out, (first, second), epoch=kept + 1)
    second.kill()
    started = time.monotonic()
    code, stdout, stderr = finish(first, timeout=120)
    assert time.monotonic() - started < 60
    assert f"resuming {out} after epoch {kept}" in stdout
    assert code == 1 and stderr.count("\n") == 1, stderr
    assert stderr.startswith("error: lost contact with process 1 of this run (")
    assert stderr.strip().endswith("start every process again to resume")
    second.communicate()
    first, second = start_both("train_lstm.py", args, out, tmp_path)
    (code0, stdout0, stderr0), (code1, _, stderr1) = finish(first), finish(second)
    assert code0 == 0 and code1 == 0, stderr0[-2000:] + stderr1[-2000:]
    assert "resuming" in stdout0 and read_metrics(out)["resumed_after_epoch"] > kept
    assert [r["epoch"] for r in read_history(out)] == [1, 2, 3, 4, 5, 6]


def test_processes_started_with_different_arguments_stop_in_one_line(tmp_path):
    args = [*SMALL, "--epochs", "2"]
    second_args = [*args, "--batch-size", "16"]
    first, second = start_both(
        "train_gru.py", args, tmp_path / "shared", tmp_path, second_args=second_args
    )
    started = time.monotonic()
    for process in (first, second):
        code, _, stderr = finish(process, timeout=120)
        assert code == 2 and stderr.count("\n") == 1, stderr[-2000:]
        assert "started with different --batch-size" in stderr
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    "second_args, named",
    [
        (["--batch-size", "16"], "--batch-size"),
        (["--epochs", "3"], "--epochs"),
        (["--units", "4"], "scripts or model flags"),
        (["--process-id", "1", "--verbose"], None),  # each process's own
    ],
)
def test_the_first_argument_that_differs_is_the_one_named(second_args, named):
    from rnn_scripts import cli
    from rnn_scripts.cluster import argument_digests, first_difference
    from rnn_scripts.contract import read_contract
    from train_gru import build_model

    contract = read_contract(build_model, "sequences", cli.reserved_names())

    def parse(argv):
        return cli.parse_arguments("t.py", None, contract, cli.ScriptDefaults(), argv)[0]

    base = [*SMALL, "--epochs", "2", "--distribute", "multi-worker", "--output-dir", "x"]
    names, mine = argument_digests(parse([*base, "--process-id", "0"]))
    _, theirs = argument_digests(parse([*base, *second_args]))
    assert first_difference(names, np.array([mine, theirs])) == named


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
        cluster = [
            "--coordinator",
            f"127.0.0.1:{port}",
            "--num-processes",
            "2",
            "--process-id",
            "0",
        ]
        argv = [
            *SMALL,
            "--distribute",
            "multi-worker",
            *cluster,
            "--output-dir",
            tmp_path / "out",
        ]
        result = run_script("train_gru.py", *argv, timeout=120)
    assert result.returncode == 2 and f"port {port} is in use" in result.stderr, explain(
        result
    )
    first, second = start_both(
        "train_gru.py",
        [*SMALL, "--epochs", "1"],
        tmp_path / "shared",
        tmp_path,
        ids=(1, 1),
        env={"RNN_SCRIPTS_JOIN_TIMEOUT": "5"},
    )
    outcomes = [finish(process, timeout=120) for process in (first, second)]
    taken = "--process-id 1 is taken by another process of this run (pid"
    assert any(code == 2 and taken in stderr for code, _, stderr in outcomes), outcomes


def test_an_unreachable_coordinator_is_one_line_within_the_timeout(tmp_path):
    started = time.monotonic()
    cluster = ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
    argv = [*SMALL, "--distribute", "multi-worker", *cluster, "--process-id", "1"]
    env = {"RNN_SCRIPTS_JOIN_TIMEOUT": "4"}
    result = run_script(
        "train_lstm.py", *argv, "--output-dir", tmp_path / "out", env=env, timeout=120
    )
    assert result.returncode == 1, explain(result)
    assert result.stderr.startswith(
        "error: process 1 could not join the others at 127.0.0.1:"
    )
    assert "within 4 s" in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 60 and not (tmp_path / "out").exists()


def test_multi_worker_without_what_it_needs_is_one_line(tmp_path):
    argv = [*SMALL, "--distribute", "multi-worker"]
    env = {"RNN_SCRIPTS_JOIN_TIMEOUT": "20"}
    result = run_script(
        "train_lstm.py", *argv, "--output-dir", tmp_path / "out", cwd=tmp_path, env=env
    )
    assert result.returncode == 2, explain(result)
    assert "needs --coordinator, --num-processes and --process-id" in result.stderr
    assert result.stderr.count("\n") == 1
    cluster = [
        "--coordinator",
        "127.0.0.1:1",
        "--num-processes",
        "2",
        "--process-id",
        "0",
    ]
    argv = [
        a for a in argv if a not in ("--backend", "jax")
    ]  # refused before any backend
    result = run_here("train_lstm.py", *argv, *cluster, cwd=tmp_path)
    assert result.returncode == 2, explain(result)
    assert "needs --output-dir, on storage every process sees" in result.stderr
    assert result.stderr.count("\n") == 1
