"""Every script and predict.py against the corpus of tools/hostile_files.py: one line naming
the file, exit code 1, no traceback, no run folder left behind. Files that once took
gigabytes run in a subprocess under a memory limit, so that a regression fails the test
instead of the machine; the others run through common.run in this process, for every script
that reads their kind."""

import importlib
import resource
import subprocess
import sys

import pytest

from helpers import MNIST_SCRIPTS, ROOT, script_env

sys.path.insert(0, str(ROOT / "tools"))
from hostile_files import FILES, write_all  # noqa: E402

import common  # noqa: E402

MEMORY_LIMIT = 6 * 2**30  # address space: TensorFlow's start-up needs about 3 GiB of it
READERS = {"sequences": MNIST_SCRIPTS, "text": ("train_imdb_bilstm.py",)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("hostile"))


def limited():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def in_process(script, argv, capsys):
    """common.run as a notebook calls it: (exit code, stderr)."""
    module = importlib.import_module(script.removesuffix(".py"))
    reads = "text" if "imdb" in script else "sequences"
    with pytest.raises(SystemExit) as exit_info:
        common.run(module.build_model, reads=reads, epochs=1, argv=argv)
    return exit_info.value.code, capsys.readouterr().err


def in_a_limited_process(program, argv, tmp_path):
    done = subprocess.run(
        [sys.executable, str(program), *map(str, argv)],
        cwd=tmp_path,
        env=script_env(),
        capture_output=True,
        text=True,
        preexec_fn=limited,
        timeout=300,
    )
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    "hostile", [h for h in FILES if h.reads != "predict"], ids=lambda h: h.name
)
def test_every_script_refuses_the_file_in_one_line(corpus, hostile, tmp_path, capsys):
    path, out = corpus / hostile.name, tmp_path / "out"
    argv = [hostile.option, path, *hostile.flags, "--output-dir", out]
    scripts = READERS[hostile.reads][:1] if hostile.memory else READERS[hostile.reads]
    for script in scripts:
        if hostile.memory:
            code, stderr = in_a_limited_process(ROOT / script, argv, tmp_path)
        else:
            code, stderr = in_process(script, argv, capsys)
        assert code == 1 and stderr.count("\n") == 1, (script, stderr[-3000:])
        assert (
            hostile.words in stderr and str(path) in stderr and "Traceback" not in stderr
        ), (script, stderr)
        assert not out.exists()


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    from helpers import explain, run_script

    out = tmp_path_factory.mktemp("run") / "run"
    result = run_script(
        "train_gru.py",
        "--synthetic",
        "--limit",
        "60",
        "--epochs",
        "1",
        "--units",
        "4",
        "--output-dir",
        out,
    )
    assert result.returncode == 0, explain(result)
    return out


@pytest.mark.parametrize(
    "hostile", [h for h in FILES if h.reads == "predict"], ids=lambda h: h.name
)
def test_predict_refuses_the_input_in_one_line(
    corpus, hostile, image_run, tmp_path, capsys
):
    path = corpus / hostile.name
    if hostile.memory:
        code, stderr = in_a_limited_process(
            ROOT / "predict.py", [image_run, path], tmp_path
        )
    else:
        from rnn_scripts.predict import main

        with pytest.raises(SystemExit) as exit_info:
            main([str(image_run), str(path)])
        code, stderr = exit_info.value.code, capsys.readouterr().err
    assert (
        code == 1
        and stderr.count("\n") == 1
        and hostile.words in stderr
        and str(path) in stderr
    ), stderr[-3000:]
