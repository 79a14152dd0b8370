"""The manual: the README is a short front door, the docs speak in the present tense, every
command they show runs (offline, in a copy of the project, block by block in the order
written), and the README's Python snippet works as printed for every kind of run.

Slow by design (every run of the suite ends with this file's seconds): every command of
README.md and docs/ runs.
"""

import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from files import separable_sequences
from helpers import ROOT, explain, run_script, script_env

DOCUMENTS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
# A command whose line ends with one of these comments is not run (its arguments are still
# checked by the program's own parser): what it needs is not at hand in a test.
NEEDS = (
    "needs the network",
    "needs a GPU",
    "on each machine",
    "your series",
    "Ctrl-C",
    "after the Ctrl-C",
    "takes",
)
PROGRAMS = ("python ", "cp ")


def commands(path):
    """(command, what it needs or None) of every command line in the file's code blocks."""
    found = []
    for language, block in re.findall(
        r"^```(\w*)\n(.*?)^```", path.read_text(), re.MULTILINE | re.DOTALL
    ):
        if language not in ("", "bash", "sh", "console"):
            continue
        for line in re.sub(
            r"\\\n\s*", "", block
        ).splitlines():  # joined where a line ends in \
            command, _, comment = line.partition("  # ")
            if command.startswith(PROGRAMS):
                need = next((n for n in NEEDS if comment.strip().startswith(n)), None)
                found.append((command.strip(), need))
    return found


def test_the_readme_is_a_short_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    headings = {
        line: number for number, line in enumerate(lines) if line.startswith("## ")
    }
    assert (
        headings["## Set up"] < 15
        and headings["## The template contract"] < 50
        and headings["## Your own data"] < 100
    )
    contract = lines[headings["## The template contract"] : headings["## Your own data"]]
    assert len(contract) <= 45
    for link in re.findall(r"\]\((docs/[^)]+)\)", "\n".join(lines)):
        assert (ROOT / link).is_file(), link


def test_no_diary_in_the_product():
    for path in DOCUMENTS:
        text = path.read_text()
        assert not re.search(
            r"\b(morning|afternoon|evening|session|UTC|yesterday|today)\b",
            text,
            re.IGNORECASE,
        ), path


def test_the_speed_table_the_start_up_note_reads_is_the_documented_one():
    import json

    from helpers import documented_speeds

    table = json.loads((ROOT / "rnn_scripts" / "cpu-speeds.json").read_text())["models"]
    assert {
        model: entry["samples_per_second"] for model, entry in table.items()
    } == documented_speeds()
    assert len(table) == 5 and all(
        len(speeds) == 4 for speeds in documented_speeds().values()
    )


def test_every_documented_command_names_a_program_and_flags_that_exist():
    for path in DOCUMENTS:
        for command, _ in commands(path):
            words = shlex.split(command)
            if words[0] != "python":
                continue
            assert (ROOT / words[1]).is_file() or words[1] == "-m", (path, command)
            if words[1].startswith("train_"):
                check_script_arguments(words[1], words[2:], path)
            elif words[1] == "tools/benchmark.py":
                sys.path.insert(0, str(ROOT / "tools"))
                import benchmark

                benchmark.parse_arguments(words[2:])


def check_script_arguments(script, argv, path):
    import importlib

    from rnn_scripts import cli
    from rnn_scripts.contract import read_contract

    module = importlib.import_module(script.removesuffix(".py"))
    contract = read_contract(
        module.build_model,
        "text" if "imdb" in script else "sequences",
        cli.reserved_names(),
    )
    try:
        cli.parse_arguments(script, None, contract, cli.ScriptDefaults(), argv)
    except SystemExit:
        pytest.fail(f"{path.name}: {script} {' '.join(argv)}: refused by the parser")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project, in which every documented command has run once."""
    folder = tmp_path_factory.mktemp("documented") / "project"
    shutil.copytree(
        ROOT,
        folder,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "runs", "__pycache__", "*.egg-info", "build"
        ),
    )
    done = set()
    for path in DOCUMENTS:
        for command, need in commands(path):
            if need is None and command not in done:
                done.add(command)
                run_documented(command, folder, path)
    return folder


def run_documented(command, folder, path):
    words = shlex.split(command)
    if words[0] == "cp":
        shutil.copy(folder / words[1], folder / words[2])
        return
    result = subprocess.run(
        [sys.executable, *words[1:]],
        cwd=folder,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"{path.name}: {command}\n{explain(result)}"


def test_every_documented_command_runs(project):
    assert (project / "runs" / "my-model" / "metrics.json").is_file()
    assert (project / "runs" / "my-model" / "export" / "model.onnx").is_file()
    assert (project / "predictions.csv").is_file()


def snippet():
    blocks = (ROOT / "README.md").read_text().split("```python\n")[1:]
    return next(block.split("```", 1)[0] for block in blocks if "TrainedRun" in block)


def run_snippet(folder, run, inputs):
    code = (
        snippet()
        .replace('"runs/my-model"', repr(str(run)))
        .replace('"new_sequences.npy"', repr(str(inputs)))
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=folder,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, explain(done)
    return done.stdout


def predicted(run, inputs, folder):
    done = subprocess.run(
        [sys.executable, str(ROOT / "predict.py"), str(run), str(inputs), "--json"],
        cwd=folder,
        env=script_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, explain(done)
    import json

    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_python_snippet_works_for_many_classes(project):
    printed = run_snippet(
        project, project / "runs" / "my-model", project / "new_sequences.npy"
    )
    classes = [
        row["class"]
        for row in predicted(
            project / "runs" / "my-model", project / "new_sequences.npy", project
        )
    ]
    assert printed.splitlines()[0] == str(classes)


def test_the_python_snippet_works_for_two_classes_and_a_regression(tmp_path):
    x, y = separable_sequences(300, classes=2, seed=4)
    np.savez(tmp_path / "two.npz", x_train=x, y_train=y)
    np.savez(
        tmp_path / "values.npz",
        x_train=x,
        y_train=x[:, -10:, 0].mean(axis=1) * 10.0 + 3.0,
    )
    np.save(tmp_path / "new.npy", x[:5])
    for name in ("two", "values"):
        result = run_script(
            "train_gru.py",
            "--data",
            tmp_path / f"{name}.npz",
            "--epochs",
            "2",
            "--units",
            "8",
            "--output-dir",
            tmp_path / name,
        )
        assert result.returncode == 0, explain(result)
    printed = run_snippet(tmp_path, tmp_path / "two", tmp_path / "new.npy").splitlines()
    rows = predicted(tmp_path / "two", tmp_path / "new.npy", tmp_path)
    assert printed[0] == str([row["class"] for row in rows])
    shown = [
        float(v) for v in re.findall(r"\d\.\d+(?:e[-+]\d+)?", " ".join(printed[1:]))
    ]
    expected = [p for row in rows for p in row["probabilities"].values()]
    np.testing.assert_allclose(shown, expected, atol=1e-6)
    printed = run_snippet(tmp_path, tmp_path / "values", tmp_path / "new.npy")
    values = [
        row["values"]["value"]
        for row in predicted(tmp_path / "values", tmp_path / "new.npy", tmp_path)
    ]
    found = [
        float(v)
        for v in re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", printed.split("None")[0])
    ]
    np.testing.assert_allclose(found, values, rtol=1e-5)
    assert printed.strip().endswith("None")
