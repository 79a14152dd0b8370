"""The command line: --help, the README's flag table, and every kind of invalid value."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import ROOT, SCRIPTS, SHORT_NAMES, explain, help_defaults, run_script
from rnn_scripts import cli

SIZE_FLAGS = ("--epochs", "--batch-size", "--units", "--limit", "--steps-per-execution")
MNIST_DEFAULTS = {"epochs": 10, "units": 256, "num_layers": 2}
IMDB_DEFAULTS = {"epochs": 3, "units": 64, "vocab_size": 20000}
GROUPS = ("training", "data", "run folder", "hardware and speed", "more than one device or machine")


def parse(argv, defaults=MNIST_DEFAULTS):
    return cli.parse_arguments("train_x.py", None, defaults, argv)[0]


def rejected(argv, capsys, defaults=MNIST_DEFAULTS):
    """Parse argv, expect exit code 2, return the one-line message."""
    with pytest.raises(SystemExit) as exit_info:
        parse(argv, defaults)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "error:" in message, message
    return message


@pytest.fixture(scope="module")
def helps():
    return {script: help_defaults(script) for script in SCRIPTS}


def readme_flags():
    """{flag: (default cell, meaning)} from the README's flag table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Every flag", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(--[a-z-]+)[^`]*` \|([^|]*)\|([^|]*)\|", section, re.MULTILINE)
    return {flag: (default.strip(), meaning.strip()) for flag, default, meaning in rows}


def documented_default(cell, script):
    """"256 (simplernn: 512, imdb_bilstm: 64)" -> the default for one script."""
    match = re.fullmatch(r"`?([^`( ]*)`?(?: \((.*)\))?", cell)
    default, overrides = match.group(1), match.group(2) or ""
    for override in overrides.split(", "):
        name, _, value = override.partition(": ")
        if name == SHORT_NAMES[script]:
            return value.strip("`")
    return default


@pytest.mark.parametrize("script", SCRIPTS)
def test_readme_flag_table_gives_each_scripts_real_defaults(helps, script):
    documented = readme_flags()
    for flag, default in helps[script].items():
        if flag == "--help":
            continue
        assert flag in documented, f"{flag} missing from README"
        expected = documented_default(documented[flag][0], script)
        assert (default or "") == expected, f"{script} {flag}: --help says {default!r}"
    flags_of_all = set().union(*(helps[s] for s in SCRIPTS))
    assert set(documented) <= flags_of_all, "README documents a flag no script has"


def test_the_default_reader_can_fail():
    assert documented_default("256 (simplernn: 512, imdb_bilstm: 64)", "train_gru.py") == "256"
    assert documented_default("256 (simplernn: 512, imdb_bilstm: 64)", "train_simplernn.py") == "512"


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_is_grouped_and_shows_every_default(script, tmp_path):
    result = run_script(script, "--help", cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    headers = re.findall(r"^([a-z ]+):$", result.stdout, re.MULTILINE)
    assert [h for h in headers if h in GROUPS] == list(GROUPS)
    assert list(tmp_path.iterdir()) == []  # --help writes nothing


def test_per_script_defaults_come_from_build_model(helps):
    assert helps["train_simplernn.py"]["--units"] == "512"
    assert helps["train_lstm.py"]["--units"] == "256"
    assert helps["train_imdb_bilstm.py"]["--units"] == "64"
    assert helps["train_imdb_bilstm.py"]["--epochs"] == "3"
    assert helps["train_imdb_bilstm.py"]["--vocab-size"] == "20000"
    assert "--layers" not in helps["train_imdb_bilstm.py"]
    assert helps["train_gru.py"]["--layers"] == "2"


@pytest.mark.parametrize("flag", SIZE_FLAGS + ("--layers",))
@pytest.mark.parametrize("value", ["0", "-3", "2.5", "many"])
def test_sizes_must_be_positive_integers(flag, value, capsys):
    message = rejected([flag, value], capsys)
    assert flag in message and "positive integer" in message


@pytest.mark.parametrize("flag", ("--vocab-size", "--max-length"))
def test_imdb_sizes_must_be_positive_integers(flag, capsys):
    assert flag in rejected([flag, "0"], capsys, IMDB_DEFAULTS)


@pytest.mark.parametrize("flag", ("--learning-rate", "--clipnorm"))
@pytest.mark.parametrize("value", ["0", "-0.1", "abc", "nan", "inf", ""])
def test_rates_must_be_positive_numbers(flag, value, capsys):
    assert flag in rejected([flag, value], capsys)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--dataset", "cifar10"], "invalid choice"),
        (["--validation-split", "1"], "[0, 1)"),
        (["--validation-split", "-0.1"], "[0, 1)"),
        (["--seed", "-1"], "2**32"),
        (["--use-cudnn", "maybe"], "invalid choice"),
        (["--backend", "mxnet"], "invalid choice"),
        (["--optimizer", "adagrad"], "invalid choice"),
        (["--lr-schedule", "linear"], "invalid choice"),
        (["--early-stopping", "-2"], "positive integer"),
        (["--early-stopping", "0"], "positive integer"),
        (["--limit", "5"], "at least 6"),
        (["--no-such-flag"], "unrecognized"),
        (["--back", "jax"], "unrecognized"),  # no abbreviations
        (["--resume", "x", "--overwrite"], "give one"),
        (["--resume", "x", "--output-dir", "y"], "leave out --output-dir"),
        (["--data", "x.npz", "--synthetic"], "leave out"),
        (["--coordinator", "h:1"], "multi-worker"),
        (["--distribute", "multi-worker", "--coordinator", "nohost"], "HOST:PORT"),
        (["--distribute", "multi-worker", "--num-processes", "2", "--process-id", "2"], "0..1"),
        (["--backend", "torch", "--steps-per-execution", "4"], "torch"),
    ],
)
def test_invalid_values_are_rejected_in_one_line(argv, words, capsys):
    assert words in rejected(argv, capsys)


def test_imdb_script_has_no_mnist_datasets(capsys):
    assert "invalid choice" in rejected(["--dataset", "mnist"], capsys, IMDB_DEFAULTS)


@settings(max_examples=60, deadline=None)
@given(flag=st.sampled_from(SIZE_FLAGS), value=st.integers(max_value=0))
def test_property_any_non_positive_size_is_rejected(flag, value):
    with pytest.raises(SystemExit) as exit_info:
        parse([flag, str(value)])
    assert exit_info.value.code == 2


@settings(max_examples=60, deadline=None)
@given(flag=st.sampled_from(SIZE_FLAGS), value=st.integers(min_value=6, max_value=10**6))
def test_property_any_positive_size_is_accepted(flag, value):
    assert getattr(parse([flag, str(value)]), flag[2:].replace("-", "_")) == value


@settings(max_examples=80, deadline=None)
@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_property_learning_rate_accepted_exactly_when_positive_and_finite(value):
    if value > 0 and value != float("inf"):
        assert parse(["--learning-rate", repr(value)]).learning_rate == value
    else:
        with pytest.raises(SystemExit):
            parse(["--learning-rate", repr(value)])


@settings(max_examples=60, deadline=None)
@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_property_validation_split_accepted_exactly_in_zero_to_one(value):
    if 0 <= value < 1:
        assert parse(["--validation-split", repr(value)]).validation_split == value
    else:
        with pytest.raises(SystemExit):
            parse(["--validation-split", repr(value)])


def test_smoke_means_one_epoch_on_a_small_subset():
    args = parse(["--smoke"])
    assert args.epochs == 1 and args.limit == cli.SMOKE_LIMIT
    assert parse(["--smoke", "--limit", "300"]).limit == 300


def test_invalid_value_in_a_real_run_exits_2_in_one_line_and_writes_nothing(tmp_path):
    result = run_script("train_lstm.py", "--batch-size", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--batch-size" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_bad_keras_backend_variable_is_one_line(tmp_path):
    result = run_script("train_lstm.py", "--smoke", cwd=tmp_path, env={"KERAS_BACKEND": "mxnet"})
    assert result.returncode == 2, explain(result)
    assert "KERAS_BACKEND='mxnet'" in result.stderr and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_steps_per_execution_is_16_but_1_where_keras_allows_no_more():
    assert parse([]).steps_per_execution == cli.STEPS_PER_EXECUTION == 16
    assert parse(["--backend", "torch"]).steps_per_execution == 1
    assert parse(["--distribute", "mirrored"]).steps_per_execution == 1
    assert parse(["--backend", "jax", "--distribute", "mirrored"]).steps_per_execution == 16


def test_given_names_are_the_flags_on_the_command_line():
    parser = cli.build_parser("t", None, MNIST_DEFAULTS)
    given = cli.given_names(parser, ["--epochs", "10", "--seed=3", "--smoke"])
    assert given == {"epochs", "seed", "smoke"}  # --epochs 10 equals the default: still given


def test_settle_takes_saved_values_allows_safe_changes_and_refuses_others():
    saved = vars(parse(["--seed", "7", "--learning-rate", "0.01"])).copy()
    again = parse(["--learning-rate", "0.005", "--epochs", "12"])
    merged, changes = cli.settle(again, {"learning_rate", "epochs"}, saved)
    assert merged.seed == 7 and merged.learning_rate == 0.005 and merged.epochs == 12
    assert changes == {"learning_rate": [0.01, 0.005], "epochs": [10, 12]}
    with pytest.raises(cli.UsageError, match="--seed was 7, now 1"):
        cli.settle(parse([]), {"seed"}, saved)
    with pytest.raises(cli.UsageError, match="--layers was 2, now 3"):
        cli.settle(parse(["--layers", "3"]), {"num_layers"}, saved)
    with pytest.raises(cli.UsageError, match="unknown argument 'colour'"):
        cli.settle(parse([]), set(), {**saved, "colour": "red"})


def test_the_faster_backend_note_follows_the_measured_table_and_only_on_a_cpu():
    from rnn_scripts.devices import CPU_SAMPLES_PER_SECOND, faster_backend_note

    cpu = "CPU (x86_64, 2 cores)"
    imdb_model = ("imdb_bilstm", 1_354_369)
    imdb = CPU_SAMPLES_PER_SECOND[imdb_model]
    expected_ratio = imdb["tensorflow"] / imdb["torch"]
    assert expected_ratio > 2
    assert faster_backend_note(*imdb_model, "torch", cpu) == (
        f"note: on a 2-core CPU the tensorflow backend trained this model {expected_ratio:.1f}x "
        "faster (docs/performance.md): --backend tensorflow"
    )
    assert faster_backend_note(*imdb_model, "tensorflow", cpu) is None  # already the fastest
    assert faster_backend_note(*imdb_model, "torch", "1 GPU: NVIDIA H100") is None
    assert faster_backend_note("imdb_bilstm", 7_683, "torch", cpu) is None  # a copy on other data


def test_the_faster_backend_note_says_how_to_install_a_missing_backend(monkeypatch):
    import importlib.util

    from rnn_scripts.devices import faster_backend_note

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    note = faster_backend_note("lstm", 819_722, "tensorflow", "CPU (x86_64, 2 cores)")
    assert note.endswith("--backend torch (pip install -r requirements-torch.txt)")
