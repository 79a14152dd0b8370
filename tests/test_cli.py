"""The command line: --help, the README's flag table, and every kind of invalid value."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import common
from helpers import ROOT, SCRIPTS, run_script

SIZE_FLAGS = ("--epochs", "--batch-size", "--units", "--limit", "--steps-per-execution")
IMDB_SIZE_FLAGS = ("--vocab-size", "--max-length")


def parse(argv, task="mnist"):
    return common.parse_arguments(
        "train_x.py", None, {"epochs": 10, "units": 256}, task, argv
    )


def rejected(argv, capsys, task="mnist"):
    """Parse argv, expect exit code 2, return the one-line message."""
    with pytest.raises(SystemExit) as exit_info:
        parse(argv, task)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "error:" in message, message
    return message


def flags_in_help(text):
    return set(re.findall(r"^  (--[a-z-]+)", text, flags=re.MULTILINE))


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_lists_every_flag_with_its_default(script, tmp_path):
    result = run_script(script, "--help", cwd=tmp_path)
    assert result.returncode == 0
    expected = {
        "--epochs",
        "--batch-size",
        "--learning-rate",
        "--units",
        "--seed",
        "--validation-split",
        "--dataset",
        "--data-dir",
        "--synthetic",
        "--limit",
        "--smoke",
        "--output-dir",
        "--use-cudnn",
        "--verbose",
        "--resume",
        "--overwrite",
        "--deterministic",
        "--mixed-precision",
        "--backend",
        "--distribute",
        "--cpu-threads",
        "--steps-per-execution",
    }
    if "imdb" in script:
        expected |= {"--vocab-size", "--max-length"}
    assert flags_in_help(result.stdout) == expected
    epochs = "3" if "imdb" in script else "10"
    assert f"training epochs (default: {epochs})" in result.stdout
    assert "(default: 64)" in result.stdout
    assert list(tmp_path.iterdir()) == []  # --help writes nothing


def readme_flags():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Every flag", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `(--[a-z-]+)[^`]*` \|([^|]*)\|", section, re.MULTILINE))


def test_readme_flag_table_matches_the_parser():
    documented = readme_flags()
    for task in ("mnist", "imdb"):
        parser = common.build_parser("t.py", None, {"epochs": 10, "units": 256}, task)
        actual = {a.option_strings[-1]: a for a in parser._actions if a.option_strings}
        actual.pop("--help")
        for flag, action in actual.items():
            assert flag in documented, f"{flag} missing from README"
            if action.default not in (None, False):
                assert str(action.default) in documented[flag], f"{flag} default differs"
        assert set(documented) >= set(actual)
    all_flags = set(
        common.build_parser(
            "t", None, {"epochs": 1, "units": 1}, "imdb"
        )._option_string_actions
    )
    assert set(documented) <= all_flags, "README documents a flag the code does not have"


@pytest.mark.parametrize("flag", SIZE_FLAGS)
@pytest.mark.parametrize("value", ["0", "-3", "2.5", "many"])
def test_sizes_must_be_positive_integers(flag, value, capsys):
    message = rejected([flag, value], capsys)
    assert flag in message and "positive integer" in message


@pytest.mark.parametrize("flag", IMDB_SIZE_FLAGS)
def test_imdb_sizes_must_be_positive_integers(flag, capsys):
    assert flag in rejected([flag, "0"], capsys, task="imdb")


@pytest.mark.parametrize("value", ["0", "-0.1", "abc", "nan", "inf", ""])
def test_learning_rate_must_be_a_positive_number(value, capsys):
    assert "--learning-rate" in rejected(["--learning-rate", value], capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["--dataset", "cifar10"],
        ["--validation-split", "1"],
        ["--validation-split", "-0.1"],
        ["--seed", "-1"],
        ["--use-cudnn", "maybe"],
        ["--backend", "mxnet"],
        ["--limit", "5"],
        ["--no-such-flag"],
    ],
)
def test_other_invalid_values_are_rejected_in_one_line(argv, capsys):
    rejected(argv, capsys)


def test_imdb_script_has_no_mnist_datasets(capsys):
    assert "invalid choice" in rejected(["--dataset", "mnist"], capsys, task="imdb")


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
    good = value > 0 and value != float("inf")
    if good:
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
    assert args.epochs == 1 and args.limit == common.SMOKE_LIMIT
    assert parse(["--smoke", "--limit", "300"]).limit == 300


def test_invalid_value_in_a_real_run_exits_2_in_one_line_and_writes_nothing(tmp_path):
    result = run_script("train_lstm.py", "--batch-size", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--batch-size" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_steps_per_execution_is_16_but_1_where_keras_allows_no_more(capsys):
    assert parse([]).steps_per_execution == common.STEPS_PER_EXECUTION == 16
    assert parse(["--backend", "torch"]).steps_per_execution == 1
    assert parse(["--distribute", "mirrored"]).steps_per_execution == 1
    assert (
        parse(["--backend", "jax", "--distribute", "mirrored"]).steps_per_execution == 16
    )
    assert "torch" in rejected(
        ["--backend", "torch", "--steps-per-execution", "4"], capsys
    )
