"""Every script and predict.py against the corpus of tools/hostile_files.py: one line naming
the file, exit code 1, no traceback, no run folder left behind. Every file runs through
common.run in this process, for every script that reads its kind; files that once took
gigabytes run under a memory limit (helpers.memory_limit), so that a regression fails the
test (MemoryError) instead of taking the machine."""

import contextlib
import importlib
import sys

import pytest

from helpers import MNIST_SCRIPTS, ROOT, memory_limit

sys.path.insert(0, str(ROOT / "tools"))
from hostile_files import FILES, write_all  # noqa: E402

import common  # noqa: E402

EXTRA_MEMORY = 2 * 2**30  # what a refused file may take beyond this process's own
READERS = {"sequences": MNIST_SCRIPTS, "text": ("train_imdb_bilstm.py",)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("hostile"))


def in_process(script, argv, capsys):
    """common.run as a notebook calls it: (exit code, stderr)."""
    module = importlib.import_module(script.removesuffix(".py"))
    reads = "text" if "imdb" in script else "sequences"
    with pytest.raises(SystemExit) as exit_info:
        common.run(module.build_model, reads=reads, epochs=1, argv=argv)
    return exit_info.value.code, capsys.readouterr().err


def marked(files):
    """The first file of each test is in the smoke tier: one bad file, refused."""
    smoke = [pytest.mark.smoke]
    return [
        pytest.param(h, id=h.name, marks=smoke if i == 0 else [])
        for i, h in enumerate(files)
    ]


@pytest.mark.parametrize("hostile", marked([h for h in FILES if h.reads != "predict"]))
def test_every_script_refuses_the_file_in_one_line(corpus, hostile, tmp_path, capsys):
    path, out = corpus / hostile.name, tmp_path / "out"
    argv = [hostile.option, path, *hostile.flags, "--output-dir", out]
    scripts = READERS[hostile.reads][:1] if hostile.memory else READERS[hostile.reads]
    for script in scripts:
        with memory_limit(EXTRA_MEMORY) if hostile.memory else contextlib.nullcontext():
            code, stderr = in_process(script, argv, capsys)
        assert code == 1 and stderr.count("\n") == 1, (script, stderr[-3000:])
        assert (
            hostile.words in stderr and str(path) in stderr and "Traceback" not in stderr
        ), (script, stderr)
        assert not out.exists()


@pytest.mark.parametrize("hostile", marked([h for h in FILES if h.reads == "predict"]))
def test_predict_refuses_the_input_in_one_line(
    corpus, hostile, finished, tmp_path, capsys
):
    from rnn_scripts.predict import main

    image_run, path = finished("images"), corpus / hostile.name
    with memory_limit(EXTRA_MEMORY) if hostile.memory else contextlib.nullcontext():
        with pytest.raises(SystemExit) as exit_info:
            main([str(image_run), str(path)])
    code, stderr = exit_info.value.code, capsys.readouterr().err
    assert (
        code == 1
        and stderr.count("\n") == 1
        and hostile.words in stderr
        and str(path) in stderr
    ), stderr[-3000:]
