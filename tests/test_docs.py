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
from helpers import ROOT, call_here, explain, run_here, script_env

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
        copies = {}  # a file a documented `cp` makes stands for the file it copies
        for command, _ in commands(path):
            words = shlex.split(command)
            if words[0] == "cp":
                copies[words[2]] = words[1]
            if words[0] != "python":
                continue
            program = copies.get(words[1], words[1])
            assert (ROOT / program).is_file() or program == "-m", (path, command)
            if program.startswith("train_"):
                check_script_arguments(program, words[2:], path)
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
    """A documented command in the project's copy: the tools as processes (they load no
    backend), the scripts, predict.py and export.py in this process (helpers.run_here,
    call_here) from the copy's folder."""
    from rnn_scripts import export, predict

    words = shlex.split(command)
    if words[0] == "cp":
        shutil.copy(folder / words[1], folder / words[2])
        return
    program, argv = words[1], words[2:]
    if program.startswith("train_"):
        result = run_here(folder / program, *argv, cwd=folder)
    elif program in ("predict.py", "export.py"):
        main = {"predict.py": predict.main, "export.py": export.main}[program]
        result = call_here(main, argv, cwd=folder)
    else:
        command = [sys.executable, *words[1:]]
        result = subprocess.run(
            command, cwd=folder, env=script_env(), capture_output=True, text=True
        )
    assert result.returncode == 0, f"{path.name}: {command}\n{explain(result)}"


def test_every_documented_command_runs(project):
    assert (project / "runs" / "my-model" / "metrics.json").is_file()
    assert (project / "runs" / "my-model" / "export" / "model.onnx").is_file()
    assert (project / "runs" / "my-texts" / "predictions.csv").is_file()


def snippet():
    blocks = (ROOT / "README.md").read_text().split("```python\n")[1:]
    return next(block.split("```", 1)[0] for block in blocks if "TrainedRun" in block)


def run_snippet(folder, run, inputs):
    """The README's snippet as printed, in this process, on `run` and `inputs`."""
    import contextlib
    import io
    import os

    code = snippet().replace('"runs/my-model"', repr(str(run)))
    code = code.replace('"new_sequences.npy"', repr(str(inputs)))
    printed, here = io.StringIO(), os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(printed):
            exec(code, {})
    finally:
        os.chdir(here)
    return printed.getvalue()


def predicted(run, inputs, folder):
    import json

    from rnn_scripts.predict import main

    done = call_here(main, [run, inputs, "--json"], cwd=folder)
    assert done.returncode == 0, explain(done)
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_python_snippet_works_for_many_classes(project):
    printed = run_snippet(
        project, project / "runs" / "my-model", project / "new_sequences.npy"
    )
    found = predicted(
        project / "runs" / "my-model", project / "new_sequences.npy", project
    )
    assert printed.splitlines()[0] == str([row["class"] for row in found])


def test_the_python_snippet_works_for_two_classes_and_a_regression(finished, tmp_path):
    from files import write_regression

    x, _ = separable_sequences(300, classes=2, seed=4)
    np.save(tmp_path / "two.npy", x[:5])
    printed = run_snippet(
        tmp_path, finished("two classes"), tmp_path / "two.npy"
    ).splitlines()
    rows = predicted(finished("two classes"), tmp_path / "two.npy", tmp_path)
    assert printed[0] == str([row["class"] for row in rows])
    shown = [
        float(v) for v in re.findall(r"\d\.\d+(?:e[-+]\d+)?", " ".join(printed[1:]))
    ]
    expected = [p for row in rows for p in row["probabilities"].values()]
    np.testing.assert_allclose(shown, expected, atol=1e-6)
    values_x, _ = write_regression(tmp_path / "values.npz")
    np.save(tmp_path / "values.npy", values_x[:5])
    printed = run_snippet(tmp_path, finished("regression"), tmp_path / "values.npy")
    rows = predicted(finished("regression"), tmp_path / "values.npy", tmp_path)
    values = [row["values"]["value"] for row in rows]
    found = [
        float(v)
        for v in re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", printed.split("None")[0])
    ]
    np.testing.assert_allclose(found, values, rtol=1e-5)
    assert printed.strip().endswith("None")
