"""Shared test helpers: run a training script as a subprocess, read what it wrote."""

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = (
    "train_simplernn.py",
    "train_gru.py",
    "train_lstm.py",
    "train_bilstm.py",
    "train_imdb_bilstm.py",
)
MNIST_SCRIPTS = SCRIPTS[:4]
SHORT_NAMES = {s: s.removeprefix("train_").removesuffix(".py") for s in SCRIPTS}
_KERAS_HOME = tempfile.mkdtemp(prefix="rnn-scripts-keras-home-")


# What a finished run of an image script leaves in its folder (no lock, no partial file);
# a run on other data has no samples.png.
RUN_FILES = frozenset(
    ("training-state", "args.json", "preprocessing.json", "model.keras", "best.keras")
    + ("history.csv", "metrics.json", "curves.png", "confusion.png", "samples.png")
)


def script_env(env=None, **overrides):
    """os.environ plus `env`: KERAS_HOME in a temp dir (no download cache), no TF_CONFIG,
    no KERAS_BACKEND and no CPU split unless the caller sets them, and the repository on
    PYTHONPATH (as if the package were installed) for scripts copied elsewhere."""
    merged = dict(os.environ)
    for name in ("TF_CONFIG", "KERAS_BACKEND", "RNN_SCRIPTS_CPU_DEVICES", "XLA_FLAGS"):
        merged.pop(name, None)
    merged["KERAS_HOME"] = _KERAS_HOME
    merged["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), (env or {}).get("PYTHONPATH")) if p
    )
    merged.update({k: v for k, v in (env or {}).items() if k != "PYTHONPATH"})
    merged.update(overrides)
    return merged


def run_script(name, *args, env=None, cwd=None, timeout=600, **options):
    """Run the script `name` (e.g. "train_lstm.py") with `args` under sys.executable.

    Returns the subprocess.CompletedProcess with text stdout and stderr. `env` adds to (and
    overrides) the environment built by script_env(); cwd defaults to a fresh temp dir.
    """
    return subprocess.run(
        **_launch(name, args, env, cwd), capture_output=True, timeout=timeout, **options
    )


STARTED = []  # the processes of start_script; conftest.py kills any that outlives its test


def start_script(name, *args, env=None, cwd=None):
    """Like run_script, but returns the running subprocess.Popen (text pipes)."""
    process = subprocess.Popen(
        **_launch(name, args, env, cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    STARTED.append(process)
    return process


# The default working folders of launched scripts live here, removed when the test process ends.
_SCRATCH = tempfile.TemporaryDirectory(prefix="rnn-scripts-cwd-")


def _launch(name, args, env, cwd):
    command = [sys.executable, str(ROOT / name), *(str(a) for a in args)]
    cwd = cwd or tempfile.mkdtemp(dir=_SCRATCH.name)
    return {"args": command, "cwd": cwd, "env": script_env(env), "text": True}


def run_here(script, *args, env=None, cwd=None, any_backend=False):
    """Run a script as `python SCRIPT ARGS` would, in this test process: its own file as
    __main__ (its own run() call and arguments), this process's TensorFlow already loaded
    and warm. Returns a subprocess.CompletedProcess (exit code, stdout, stderr) like
    run_script. For what needs a process of its own (another backend, signals, a kill, a
    lock held by another process, a memory limit), use run_script."""
    import runpy
    import traceback

    path = Path(script) if Path(script).is_absolute() else ROOT / script
    argv = [str(path), *(str(a) for a in args)]
    env = dict(env or {})
    backends = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--backend"]
    backend = backends[-1] if backends else env.get("KERAS_BACKEND", "tensorflow")
    other = backend in ("jax", "torch") or "RNN_SCRIPTS_CPU_DEVICES" in env
    if other and not any_backend:
        raise ValueError("run_here runs on this process's TensorFlow; use run_script")
    stdout, stderr, code = io.StringIO(), io.StringIO(), 0
    saved = (sys.argv, os.getcwd(), dict(os.environ))
    os.environ.update(env)
    sys.argv = argv
    os.chdir(cwd or tempfile.mkdtemp(dir=_SCRATCH.name))
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                runpy.run_path(str(path), run_name="__main__")
            except SystemExit as exit_info:
                code = exit_info.code if isinstance(exit_info.code, int) else 1
            except Exception:  # what a process would print before exiting with 1
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = saved[0]
        os.chdir(saved[1])
        os.environ.clear()
        os.environ.update(saved[2])
    return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())


def call_here(main, argv, cwd=None, stdin=""):
    """A program's main(argv) (predict.py's, export.py's) in this process, as its command
    line runs it: (exit code, stdout, stderr) as a CompletedProcess."""

    stdout, stderr, code = io.StringIO(), io.StringIO(), 0
    saved = (os.getcwd(), sys.stdin)
    os.chdir(cwd or tempfile.mkdtemp(dir=_SCRATCH.name))
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                main([str(a) for a in argv])
            except SystemExit as exit_info:
                code = exit_info.code if isinstance(exit_info.code, int) else 1
    finally:
        os.chdir(saved[0])
        sys.stdin = saved[1]
    return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())


def predict_here(run_dir, *inputs, cwd=None, stdin=""):
    """predict.py RUN INPUT... in this process (see call_here)."""
    from rnn_scripts.predict import main

    return call_here(main, [run_dir, *inputs], cwd=cwd, stdin=stdin)


class Crash(BaseException):
    """Stands in for a kill: raised right after an epoch's state is saved, it passes every
    handler of the pipeline (as a SIGKILL does), leaving on disk what a killed run leaves
    (but its lock, which a dead process's flock no longer holds anyway)."""


def run_until_epoch(script, args, out, epoch=1, any_backend=False):
    """run_here, stopped dead right after `epoch`'s state is saved (see Crash)."""
    from rnn_scripts.rundir import RunDir

    original = RunDir.save_state

    def save_then_crash(self, number, *rest, **options):
        original(self, number, *rest, **options)
        if number == epoch:
            raise Crash(f"after epoch {epoch}")

    RunDir.save_state = save_then_crash
    try:
        result = run_here(script, *args, "--output-dir", out, any_backend=any_backend)
    except Crash:
        assert (Path(out) / "training-state").is_dir()
        assert not (Path(out) / "metrics.json").exists()
        return
    finally:
        RunDir.save_state = original
    raise AssertionError(f"the run did not reach epoch {epoch}:\n{explain(result)}")


def run_in_one_process(*steps, env=None):
    """Runs in one new process (tests/in_one_process.py): for another backend than this
    process's TensorFlow, imported once for all of them. Each step is (script, args) or
    (script, args, {"env": ..., "until_epoch": N}); returns a CompletedProcess per step."""
    import json

    folder = Path(tempfile.mkdtemp(dir=_SCRATCH.name))
    plan = [
        {"script": s[0], "args": [str(a) for a in s[1]], **(s[2] if len(s) > 2 else {})}
        for s in steps
    ]
    (folder / "steps.json").write_text(json.dumps(plan))
    command = [
        sys.executable,
        str(ROOT / "tests" / "in_one_process.py"),
        "steps.json",
        "results.json",
    ]
    done = subprocess.run(
        command,
        cwd=folder,
        env=script_env(env),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, explain(done)
    found = json.loads((folder / "results.json").read_text())
    return [
        subprocess.CompletedProcess(p["args"], f["returncode"], f["stdout"], f["stderr"])
        for p, f in zip(plan, found)
    ]


def explain(result):
    """The tail of a finished run's output, for assertion messages."""
    return (
        f"exit {result.returncode}\n--- stdout ---\n{result.stdout[-3000:]}"
        f"\n--- stderr ---\n{result.stderr[-3000:]}"
    )


def read_metrics(out):
    return json.loads((Path(out) / "metrics.json").read_text())


def read_history(out):
    with open(Path(out) / "history.csv", newline="") as stream:
        return [
            {k: (float(v) if v else None) for k, v in row.items()}
            for row in csv.DictReader(stream)
        ]


def importable(module):
    """True when `module` can be imported (checked without importing it here)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def help_defaults(script):
    """{flag: default text or None} as `SCRIPT --help` prints them."""
    import re

    result = run_here(script, "--help")
    assert result.returncode == 0, explain(result)
    found, flag, text = {}, None, ""
    for line in result.stdout.splitlines() + [""]:
        start = re.match(r"^  (--[a-z-]+)", line)
        if start or not line.startswith("   "):
            if flag:
                default = re.search(r"\(default: ([^)]*)\)\s*$", " ".join(text.split()))
                found[flag] = default.group(1) if default else None
            flag, text = (start.group(1), line[start.end() :]) if start else (None, "")
        else:
            text += " " + line
    return found


def copy_script(script, folder, edit=lambda text: text, name=None):
    """A script copied as a template: the script (edited) and common.py, into folder."""
    import shutil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name or script)
    target.write_text(edit((ROOT / script).read_text()))
    shutil.copy(ROOT / "common.py", folder / "common.py")
    return target


def without_backends(folder):
    """An environment in which importing TensorFlow, JAX or torch fails (fake packages
    first on the path): what answers there never loaded a backend."""
    fakes = Path(folder) / "no-backends"
    for name in ("tensorflow", "jax", "torch"):
        (fakes / name).mkdir(parents=True, exist_ok=True)
        (fakes / name / "__init__.py").write_text(
            'raise ImportError("backend unavailable in this test")\n'
        )
    return {"PYTHONPATH": str(fakes)}


def load_model(path):
    import keras

    return keras.saving.load_model(path, safe_mode=True)


def standardised(run, x):
    """The run's standardisation, read from its preprocessing.json here: x * scale + offset."""
    import numpy as np

    spec = json.loads((run / "preprocessing.json").read_text())
    scale, offset = np.float32(spec["scale"]), np.float32(spec.get("offset", 0.0))
    return np.asarray(x, np.float32) * scale + offset


def assert_same_weights(first, second, name="model.keras", atol=1e-6):
    """The two runs' saved models hold the same weights (1e-6: reduction-order rounding)."""
    import numpy as np

    for a, b in zip(
        load_model(Path(first) / name).get_weights(),
        load_model(Path(second) / name).get_weights(),
    ):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)


MODEL_NAMES = {
    "LSTM": "lstm",
    "GRU": "gru",
    "BiLSTM": "bilstm",
    "SimpleRNN": "simplernn",
    "IMDB BiLSTM": "imdb_bilstm",
}
BACKEND_NAMES = {
    "TensorFlow": "tensorflow",
    "JAX": "jax",
    "torch": "torch",
    "native PyTorch": "pytorch",
}


def documented_speeds():
    """{model: {backend: training samples/s}} from docs/performance.md's per-model table."""
    import re

    text = (
        (ROOT / "docs" / "performance.md")
        .read_text()
        .split("## Per model", 1)[1]
        .split("\n## ", 1)[0]
    )
    found = {}
    for model, backend, speed in re.findall(
        r"^\| ([A-Za-z ]+?) \| ([A-Za-z ]+?) \| \**([\d,]+)\**", text, re.MULTILINE
    ):
        if model in MODEL_NAMES and backend in BACKEND_NAMES:
            found.setdefault(MODEL_NAMES[model], {})[BACKEND_NAMES[backend]] = int(
                speed.replace(",", "")
            )
    return found


@contextlib.contextmanager
def memory_limit(extra_bytes):
    """Inside the block this process may map at most `extra_bytes` more memory: a runaway
    allocation raises MemoryError (a failed test) instead of taking the machine."""
    import resource

    size = next(
        int(line.split()[1]) * 1024
        for line in open("/proc/self/status")
        if line.startswith("VmSize:")
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
