"""The command line and the template contract: flags made from build_model, --help, the
documented flag table, and every kind of invalid value (one line, exit code 2)."""

import importlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import (
    ROOT,
    SCRIPTS,
    SHORT_NAMES,
    copy_script,
    explain,
    help_defaults,
    run_here,
    run_script,
    without_backends,
)
from rnn_scripts import cli
from rnn_scripts.contract import ContractError, read_contract

SIZE_FLAGS = (
    "--epochs",
    "--batch-size",
    "--units",
    "--limit",
    "--steps-per-execution",
    "--num-layers",
)
GROUPS = (
    "training",
    "model (build_model's keyword parameters)",
    "data",
    "run folder",
    "hardware and speed",
    "more than one device or machine",
)


def script_module(script):
    return importlib.import_module(script.removesuffix(".py"))


def contract_of(script="train_lstm.py"):
    module = script_module(script)
    reads = "text" if "imdb" in script else "sequences"
    return read_contract(module.build_model, reads, cli.reserved_names())


def script_defaults(script):
    """The defaults the script's run() call sets (its epochs)."""
    epochs = re.search(r"epochs=(\d+)", (ROOT / script).read_text()).group(1)
    return cli.ScriptDefaults(epochs=int(epochs))


def parse(argv, script="train_lstm.py"):
    return cli.parse_arguments(
        "train_x.py", None, contract_of(script), script_defaults(script), argv
    )[0]


def rejected(argv, capsys, script="train_lstm.py"):
    """Parse argv, expect exit code 2, return the one-line message."""
    with pytest.raises(SystemExit) as exit_info:
        parse(argv, script)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "error:" in message, message
    return message


# --------------------------------------------------------------------------------------
# The contract: build_model's signature makes the flags
# --------------------------------------------------------------------------------------
def test_every_keyword_with_a_default_becomes_a_flag_of_its_name_type_and_default():
    def build_model(
        features,
        outputs,
        units=8,
        dropout=0.1,
        shift=-2,
        cell="lstm",
        masked=False,
        note=None,
    ):
        """units: units per layer"""

    contract = read_contract(build_model, "sequences", cli.reserved_names())
    assert contract.data_parameters == ("features", "outputs")
    assert [f.flag for f in contract.flags] == [
        "--units",
        "--dropout",
        "--shift",
        "--cell",
        "--masked",
        "--note",
    ]
    config = cli.parse_arguments("x", None, contract, cli.ScriptDefaults(), [])[0]
    assert (
        config.units,
        config.dropout,
        config.shift,
        config.cell,
        config.masked,
        config.note,
    ) == (8, 0.1, -2, "lstm", False, None)
    argv = [
        "--units",
        "3",
        "--dropout",
        "0.25",
        "--shift",
        "-5",
        "--cell",
        "gru",
        "--masked",
        "--note",
        "x",
    ]
    config = cli.parse_arguments("x", None, contract, cli.ScriptDefaults(), argv)[0]
    assert (
        config.units,
        config.dropout,
        config.shift,
        config.cell,
        config.masked,
        config.note,
    ) == (3, 0.25, -5, "gru", True, "x")
    assert contract.model_options(config, {"features": 4, "outputs": 2, "steps": 9}) == {
        "units": 3, "dropout": 0.25, "shift": -5, "cell": "gru", "masked": True, "note": "x", "features": 4, "outputs": 2,
    }  # fmt: skip
    assert (
        cli.parse_arguments("x", None, contract, cli.ScriptDefaults(), ["--no-masked"])[
            0
        ].masked
        is False
    )


@pytest.mark.parametrize(
    "source, words",
    [
        (
            "def build_model(features, hidden): pass",
            "parameter 'hidden' has no default and is not one the data fill",
        ),
        (
            "def build_model(features, epochs=3): pass",
            "'epochs' is also one of the pipeline's own flags",
        ),
        ("def build_model(features, sizes=(1, 2)): pass", "default of type tuple"),
        ("def build_model(features, **options): pass", "name each parameter"),
    ],
)
def test_a_parameter_outside_the_contract_is_named_in_one_line(source, words):
    namespace = {}
    exec(source, namespace)
    with pytest.raises(ContractError, match=re.escape(words)):
        read_contract(namespace["build_model"], "sequences", cli.reserved_names())


def test_the_script_says_what_it_reads():
    with pytest.raises(ContractError, match="reads='images'"):
        read_contract(lambda features: None, "images")


def test_a_copied_script_with_an_added_keyword_gets_its_flag_and_its_value_reaches_the_model(
    tmp_path,
):
    def add_dropout(script):
        script = script.replace(
            "units=256, num_layers=2)", "units=256, num_layers=2, dropout=0.1)"
        )
        script = script.replace(
            "num_layers: recurrent layers",
            "num_layers: recurrent layers\n    dropout: input dropout of each LSTM layer",
        )
        return script.replace(
            "layers.LSTM(units, return_sequences=more)",
            "layers.LSTM(units, dropout=dropout, return_sequences=more)",
        )

    copy_script("train_lstm.py", tmp_path, add_dropout, "train_dropout.py")
    help_text = run_here(tmp_path / "train_dropout.py", "--help", cwd=tmp_path).stdout
    assert re.search(
        r"--dropout DROPOUT\s+input dropout of each LSTM layer \(default: 0\.1\)",
        help_text,
    ), help_text
    result = run_here(
        tmp_path / "train_dropout.py",
        "--synthetic",
        "--limit",
        "60",
        "--epochs",
        "1",
        "--units",
        "4",
        "--dropout",
        "0.3",
        "--output-dir",
        tmp_path / "run",
        cwd=tmp_path,
    )
    assert result.returncode == 0, explain(result)
    from helpers import load_model, read_metrics

    layer = load_model(tmp_path / "run" / "model.keras").layers[0]
    assert (
        layer.dropout == 0.3
        and read_metrics(tmp_path / "run")["arguments"]["dropout"] == 0.3
    )


def test_a_build_model_outside_the_contract_stops_at_help_in_one_line(tmp_path):
    copy_script(
        "train_lstm.py",
        tmp_path,
        lambda s: s.replace("units=256, num_layers=2)", "hidden_size, num_layers=2)"),
        "train_bad.py",
    )
    result = run_here(tmp_path / "train_bad.py", "--help", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        result.stderr.count("\n") == 1
        and "'hidden_size' has no default" in result.stderr
    ), explain(result)


# --------------------------------------------------------------------------------------
# --help and the documented flags
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def helps():
    return {script: help_defaults(script) for script in SCRIPTS}


def documented_flags():
    """{flag: (default cell, meaning)} from docs/flags.md's table."""
    text = (ROOT / "docs" / "flags.md").read_text()
    rows = re.findall(r"^\| `(--[a-z-]+)[^`]*` \|([^|]*)\|([^|]*)\|", text, re.MULTILINE)
    return {flag: (default.strip(), meaning.strip()) for flag, default, meaning in rows}


def documented_default(cell, script):
    """ "256 (simplernn: 512, imdb_bilstm: 64)" -> the default for one script."""
    match = re.fullmatch(r"`?([^`( ]*)`?(?: \((.*)\))?", cell)
    default, overrides = match.group(1), match.group(2) or ""
    for override in overrides.split(", "):
        name, _, value = override.partition(": ")
        if name == SHORT_NAMES[script]:
            return value.strip("`")
    return default


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_flag_table_gives_each_scripts_real_flags_and_defaults(helps, script):
    documented = documented_flags()
    for flag, default in helps[script].items():
        if flag == "--help":
            continue
        assert flag in documented, f"{flag} missing from docs/flags.md"
        assert (default or "") == documented_default(documented[flag][0], script), (
            f"{script} {flag}: --help says {default!r}"
        )
    flags_of_all = set().union(*(helps[s] for s in SCRIPTS))
    assert set(documented) <= flags_of_all, (
        "docs/flags.md documents a flag no script has"
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_every_default_the_parser_uses(helps, script):
    """Each flag's shown default is the value a run without that flag gets."""
    config = parse([], script)
    # its help text gives the derived default
    described = ("--help", "--steps-per-execution")
    for flag, shown in helps[script].items():
        if flag in described or shown is None:
            continue
        value = getattr(config, cli_dest(flag))
        assert shown == str(value), (
            f"{script} {flag}: --help shows {shown!r}, the parser uses {value!r}"
        )
    unshown = {
        f for f, shown in helps[script].items() if shown is None and f not in described
    }
    defaults_that_matter = {
        f for f in unshown if getattr(config, cli_dest(f)) not in (None, False, [])
    }
    assert defaults_that_matter == set(), (
        f"{script}: defaults not shown: {defaults_that_matter}"
    )


def cli_dest(flag):
    return flag[2:].replace("-", "_")


def test_help_groups_the_flags_and_writes_nothing(tmp_path):
    result = run_here("train_imdb_bilstm.py", "--help", cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    headers = re.findall(r"^([a-z ']+(?:\([^)]*\))?):$", result.stdout, re.MULTILINE)
    assert [h for h in headers if h in GROUPS] == list(GROUPS)
    assert list(tmp_path.iterdir()) == []  # --help writes nothing


@pytest.mark.smoke
def test_help_and_argument_errors_answer_without_loading_a_backend(tmp_path):
    """With TensorFlow, JAX and torch made unimportable, --help and a bad value still answer."""
    env = without_backends(tmp_path)
    result = run_script("train_gru.py", "--help", env=env, cwd=tmp_path)
    assert result.returncode == 0 and "--num-layers" in result.stdout, explain(result)
    result = run_script("train_gru.py", "--batch-size", "0", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "--batch-size" in result.stderr, explain(result)
    # training needs one
    result = run_script("train_gru.py", "--smoke", env=env, cwd=tmp_path)
    assert result.returncode != 0 and "backend unavailable in this test" in result.stderr


def test_per_script_defaults_come_from_build_model_and_run(helps):
    assert helps["train_simplernn.py"]["--units"] == "512"
    assert helps["train_lstm.py"]["--units"] == "256"
    assert helps["train_imdb_bilstm.py"]["--units"] == "64"
    assert helps["train_imdb_bilstm.py"]["--embedding-size"] == "64"
    assert helps["train_imdb_bilstm.py"]["--epochs"] == "3"
    assert helps["train_imdb_bilstm.py"]["--vocab-size"] == "20000"
    assert (
        "--num-layers" not in helps["train_imdb_bilstm.py"]
        and "--window" not in helps["train_imdb_bilstm.py"]
    )
    assert (
        helps["train_gru.py"]["--num-layers"] == "2"
        and "--max-length" not in helps["train_gru.py"]
    )


# --------------------------------------------------------------------------------------
# Invalid values
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", SIZE_FLAGS)
@pytest.mark.parametrize("value", ["0", "-3", "2.5", "many"])
def test_sizes_must_be_positive_integers(flag, value, capsys):
    message = rejected([flag, value], capsys)
    assert flag in message and "positive integer" in message


@pytest.mark.parametrize("flag", ("--vocab-size", "--max-length"))
def test_text_sizes_must_be_positive_integers(flag, capsys):
    assert flag in rejected([flag, "0"], capsys, "train_imdb_bilstm.py")


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
        (["--learning-rate", "1e308"], "up to 1e6"),
        (["--limit", "5"], "at least 6"),
        (["--no-such-flag"], "unrecognized"),
        (["--back", "jax"], "unrecognized"),  # no abbreviations
        # the flag is build_model's name: --num-layers
        (["--layers", "1"], "unrecognized"),
        (["--resume", "x", "--overwrite"], "give one"),
        (["--resume", "x", "--output-dir", "y"], "leave out --output-dir"),
        (["--data", "x.npz", "--synthetic"], "leave out"),
        (["--test-data", "x.npz"], "goes with --data"),
        (["--target", "T"], "give --data"),
        (["--delimiter", "ab"], "one character"),
        (["--export", "pickle"], "invalid choice"),
        (["--fused-kernels", "on"], "invalid choice"),
        (["--class-weight", "inverse"], "invalid choice"),
        (["--coordinator", "h:1"], "multi-worker"),
        (["--distribute", "multi-worker", "--coordinator", "nohost"], "HOST:PORT"),
        (
            [
                "--distribute",
                "multi-worker",
                "--num-processes",
                "2",
                "--process-id",
                "2",
            ],
            "0..1",
        ),
        (["--backend", "torch", "--steps-per-execution", "4"], "torch"),
    ],
)
def test_invalid_values_are_rejected_in_one_line(argv, words, capsys):
    assert words in rejected(argv, capsys)


def test_the_text_script_offers_no_image_datasets(capsys):
    assert "invalid choice" in rejected(
        ["--dataset", "mnist"], capsys, "train_imdb_bilstm.py"
    )


@settings(max_examples=60, deadline=None)
@given(flag=st.sampled_from(SIZE_FLAGS), value=st.integers(max_value=0))
def test_property_any_non_positive_size_is_rejected(flag, value):
    with pytest.raises(SystemExit) as exit_info:
        parse([flag, str(value)])
    assert exit_info.value.code == 2


@settings(max_examples=60, deadline=None)
@given(flag=st.sampled_from(SIZE_FLAGS), value=st.integers(min_value=6, max_value=10**6))
def test_property_any_positive_size_is_accepted(flag, value):
    assert getattr(parse([flag, str(value)]), cli_dest(flag)) == value


@settings(max_examples=80, deadline=None)
@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_property_learning_rate_accepted_exactly_when_positive_finite_and_at_most_1e6(
    value,
):
    if 0 < value <= 1e6:
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
    config = parse(["--smoke"])
    assert config.epochs == 1 and config.limit == cli.SMOKE_LIMIT
    assert parse(["--smoke", "--limit", "300"]).limit == 300


def test_the_configuration_is_built_once_and_cannot_change():
    config = parse(["--epochs", "4"])
    with pytest.raises(AttributeError, match="does not change"):
        config.epochs = 5
    assert config.replace(epochs=5).epochs == 5 and config.epochs == 4
    with pytest.raises(AttributeError):
        config.replace(colour="red")


def test_every_run_has_every_argument_whatever_data_its_script_reads():
    sequences, text = parse([]), parse([], "train_imdb_bilstm.py")
    assert set(dict(sequences.items())) - {"units", "num_layers"} == set(
        dict(text.items())
    ) - {"units", "embedding_size"}
    assert text.window == 24 and sequences.max_length == 200  # the other kind's defaults


def test_invalid_value_in_a_real_run_exits_2_in_one_line_and_writes_nothing(tmp_path):
    result = run_here("train_lstm.py", "--batch-size", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--batch-size" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_bad_keras_backend_variable_is_one_line(tmp_path):
    result = run_here(
        "train_lstm.py", "--smoke", cwd=tmp_path, env={"KERAS_BACKEND": "mxnet"}
    )
    assert result.returncode == 2, explain(result)
    assert "KERAS_BACKEND='mxnet'" in result.stderr and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_steps_per_execution_is_16_but_1_where_keras_allows_no_more():
    assert parse([]).steps_per_execution == cli.STEPS_PER_EXECUTION == 16
    assert parse(["--backend", "torch"]).steps_per_execution == 1
    assert parse(["--distribute", "mirrored"]).steps_per_execution == 1
    assert (
        parse(["--backend", "jax", "--distribute", "mirrored"]).steps_per_execution == 16
    )


def test_given_names_are_the_flags_on_the_command_line():
    argv = ["--epochs", "10", "--seed=3", "--smoke", "--export", "onnx", "--no-such"][
        :-1
    ]
    contract = contract_of()
    given = cli.parse_arguments("t", None, contract, cli.ScriptDefaults(), argv)[1]
    assert given == {
        "epochs",
        "seed",
        "smoke",
        "export",
    }  # --epochs 10 is the default: given


def settled(tmp_path, saved, argv, resuming=True):
    """resume.settle on a folder whose args.json holds `saved`: (Config, changes)."""
    import json
    from types import SimpleNamespace

    from rnn_scripts import resume
    from rnn_scripts.rundir import RunDir

    (tmp_path / "args.json").write_text(json.dumps({"arguments": saved}))
    config, explicit = cli.parse_arguments(
        "t", None, contract_of(), cli.ScriptDefaults(), argv
    )
    if resuming:
        config = config.replace(resume=tmp_path)
    run = SimpleNamespace(
        config=config, explicit=explicit, run_dir=RunDir(tmp_path), changes={}
    )
    resume.settle(run)
    return run.config, run.changes


def test_settle_takes_saved_values_allows_safe_changes_and_refuses_others(tmp_path):
    saved = parse(["--seed", "7", "--learning-rate", "0.01"]).to_json()
    merged, changes = settled(
        tmp_path, saved, ["--learning-rate", "0.005", "--epochs", "12"]
    )
    assert merged.seed == 7 and merged.learning_rate == 0.005 and merged.epochs == 12
    assert changes == {"learning_rate": [0.01, 0.005], "epochs": [10, 12]}
    with pytest.raises(cli.UsageError, match="--seed was 7, now 1"):
        settled(tmp_path, saved, ["--seed", "1"])
    with pytest.raises(cli.UsageError, match="--num-layers was 2, now 3"):
        settled(tmp_path, saved, ["--num-layers", "3"])
    with pytest.raises(cli.UsageError, match="--monitor was auto, now val_loss"):
        settled(tmp_path, saved, ["--monitor", "val_loss"])
    with pytest.raises(cli.UsageError, match="unknown argument 'colour'"):
        settled(tmp_path, {**saved, "colour": "red"}, [])
    with pytest.raises(cli.UsageError, match="lacks the argument 'units'"):
        settled(tmp_path, {k: v for k, v in saved.items() if k != "units"}, [])
    with pytest.raises(
        cli.UsageError, match="unfinished run started with other arguments"
    ):
        settled(tmp_path, saved, [], resuming=False)  # the same folder, another command


def test_a_percent_sign_in_a_help_line_is_shown_as_written(tmp_path):
    def percent(s):
        return s.replace(
            "units: units per recurrent layer", "units: 10% of the width, or 100%"
        )

    script = copy_script("train_gru.py", tmp_path, percent, "train_percent.py")
    result = run_here(script, "--help", cwd=tmp_path)
    assert result.returncode == 0, explain(result)
    assert "10% of the width, or 100% (default: 256)" in " ".join(result.stdout.split())


def test_a_keyword_that_is_another_flags_no_form_is_one_line():
    def build_model(features, outputs, masked=False, no_masked=1):
        pass

    with pytest.raises(
        ContractError, match="'no_masked' is also the flag that turns off 'masked'"
    ):
        read_contract(build_model, "sequences", cli.reserved_names())


def test_annotations_make_the_flags_type_and_none_stays_text_without_one(capsys):
    from typing import Literal, Optional

    def build_model(
        features,
        outputs,
        l2: float | None = None,
        depth: Optional[int] = None,  # noqa: UP045  (as many templates write it)
        cell: Literal["lstm", "gru"] = "lstm",
        sizes: list[int] = (8, 4),
        bias: bool = True,
        note=None,
    ):
        pass

    contract = read_contract(build_model, "sequences", cli.reserved_names())

    def parse(argv):
        return cli.parse_arguments("x", None, contract, cli.ScriptDefaults(), argv)[0]

    config = parse([])
    assert (
        config.l2,
        config.depth,
        config.cell,
        config.sizes,
        config.bias,
        config.note,
    ) == (None, None, "lstm", [8, 4], True, None)
    config = parse(
        [
            "--l2",
            "0.001",
            "--depth",
            "3",
            "--cell",
            "gru",
            "--sizes",
            "16",
            "8",
            "2",
            "--no-bias",
            "--note",
            "7",
        ]
    )
    assert (
        config.l2,
        config.depth,
        config.cell,
        config.sizes,
        config.bias,
        config.note,
    ) == (0.001, 3, "gru", [16, 8, 2], False, "7")
    assert (
        type(config.l2) is float
        and type(config.depth) is int
        and type(config.note) is str
    )
    for argv, words in (
        (["--l2", "much"], "expected a number"),
        (["--cell", "rnn"], "invalid choice"),
        (["--sizes", "a"], "expected an integer"),
    ):
        with pytest.raises(SystemExit):
            parse(argv)
        assert words in capsys.readouterr().err

    def other(features, table: dict = None):
        pass

    with pytest.raises(ContractError, match="'table' is annotated <class 'dict'>"):
        read_contract(other, "sequences")


def test_a_copied_scripts_help_points_at_nothing_it_lacks(helps):
    """A script copied out of the repository has no docs/ beside it."""
    for script in SCRIPTS:
        result = run_here(script, "--help")
        assert (
            "docs/"
            not in result.stdout.split("training:")[1].split("hardware and speed")[0]
        ), script
