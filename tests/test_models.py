"""The five default models (shapes for any sequence length, parameter counts, cuDNN paths),
and what the pipeline makes of a model's output: logits, probabilities, values."""

import importlib
import shlex

import keras
import numpy as np
import pytest

from helpers import ROOT
from rnn_scripts import cli, training
from rnn_scripts.contract import read_contract
from rnn_scripts.errors import UserError
from rnn_scripts.preprocess import Preprocessing

MNIST_MODELS = ("train_simplernn", "train_gru", "train_lstm", "train_bilstm")


def build(script, **options):
    defaults = (
        {"vocab_size": 20000, "outputs": 2}
        if "imdb" in script
        else {"features": 28, "outputs": 10}
    )
    return importlib.import_module(script).build_model(**{**defaults, **options})


def preprocessing_for(classes=10, features=28, targets=0):
    """A run's preprocessing for `classes` classes (or `targets` values to predict)."""
    spec = {
        "kind": "sequences",
        "task": "regression" if targets else "classification",
        "features": features,
        "steps": 28,
    }
    spec.update(scale=[1.0] * features, offset=[0.0] * features)
    if targets:
        spec.update(
            class_names=[f"value_{i}" for i in range(targets)],
            target_mean=[100.0] * targets,
            target_std=[10.0] * targets,
        )
    else:
        spec["class_names"] = [str(c) for c in range(classes)]
    return Preprocessing(spec)


def simple_rnn(inputs, units):
    return units * (inputs + units + 1)


def gru(inputs, units):  # reset_after=True keeps two bias vectors per gate
    return 3 * units * (inputs + units + 2)


def lstm(inputs, units):
    return 4 * units * (inputs + units + 1)


def dense(inputs, outputs):
    return (inputs + 1) * outputs


EXPECTED_PARAMETERS = {
    "train_simplernn": simple_rnn(28, 512) + simple_rnn(512, 512) + dense(512, 10),
    "train_gru": gru(28, 256) + gru(256, 256) + dense(256, 10),
    "train_lstm": lstm(28, 256) + lstm(256, 256) + dense(256, 10),
    "train_bilstm": 2 * lstm(28, 256) + 2 * lstm(512, 256) + dense(512, 10),
    "train_imdb_bilstm": 20000 * 64 + 2 * lstm(64, 64) + dense(128, 64) + dense(64, 2),
}


@pytest.mark.parametrize("script", sorted(EXPECTED_PARAMETERS))
def test_parameter_count_equals_the_analytic_formula(script):
    assert build(script).count_params() == EXPECTED_PARAMETERS[script]


@pytest.mark.parametrize(
    "script, options, expected",
    [
        (
            "train_simplernn",
            {"units": 128, "num_layers": 1},
            simple_rnn(28, 128) + dense(128, 10),
        ),
        ("train_simplernn", {"units": 16, "num_layers": 1}, 890),  # the tutorial's count
        ("train_lstm", {"units": 100, "num_layers": 1}, lstm(28, 100) + dense(100, 10)),
        (
            "train_gru",
            {"units": 8, "num_layers": 3},
            gru(28, 8) + 2 * gru(8, 8) + dense(8, 10),
        ),
        ("train_bilstm", {"units": 8, "num_layers": 1}, 2 * lstm(28, 8) + dense(16, 10)),
        (
            "train_lstm",
            {"features": 3, "outputs": 4, "units": 8},
            lstm(3, 8) + lstm(8, 8) + dense(8, 4),
        ),
        (
            "train_imdb_bilstm",
            {"vocab_size": 50, "outputs": 3, "units": 8, "embedding_size": 4},
            50 * 4 + 2 * lstm(4, 8) + dense(16, 64) + dense(64, 3),
        ),
    ],
)
def test_flags_and_the_data_shape_the_model(script, options, expected):
    assert build(script, **options).count_params() == expected


@pytest.mark.parametrize("script", MNIST_MODELS)
@pytest.mark.parametrize("steps", [28, 7, 41])
def test_sequence_models_give_one_output_per_class_for_any_sequence_length(
    script, steps
):
    model = build(script, units=16, features=5, outputs=7)
    logits = model.predict(np.random.rand(3, steps, 5).astype("float32"), verbose=0)
    assert logits.shape == (3, 7) and logits.dtype == np.float32


@pytest.mark.parametrize("length", [200, 37])
def test_the_imdb_model_ignores_padding(length):
    model = build("train_imdb_bilstm", vocab_size=100, units=8)
    words = np.random.default_rng(0).integers(1, 100, (2, length)).astype("int32")
    padded = np.concatenate([words, np.zeros((2, 15), "int32")], axis=1)
    out, out_padded = model.predict(words, verbose=0), model.predict(padded, verbose=0)
    assert out.shape == (2, 2)
    # the mask hides trailing zeros
    np.testing.assert_allclose(out, out_padded, atol=1e-5)


def cudnn_problems(layer):
    cell = layer.cell
    problems = []
    if keras.activations.serialize(cell.activation) != "tanh":
        problems.append("activation is not tanh")
    if keras.activations.serialize(cell.recurrent_activation) != "sigmoid":
        problems.append("recurrent_activation is not sigmoid")
    if cell.recurrent_dropout != 0 or layer.unroll or not cell.use_bias:
        problems.append("recurrent dropout, unroll or no bias")
    if isinstance(layer, keras.layers.GRU) and not cell.reset_after:
        problems.append("GRU without reset_after")
    return problems


def recurrent(model):
    return [
        layer
        for layer in training.recurrent_layers(model)
        if isinstance(layer, keras.layers.RNN)
    ]


@pytest.mark.parametrize(
    "script", ["train_gru", "train_lstm", "train_bilstm", "train_imdb_bilstm"]
)
def test_every_gated_recurrent_layer_is_cudnn_eligible(script):
    layers = recurrent(build(script))
    assert layers and all(
        isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)) for layer in layers
    )
    for layer in layers:
        assert cudnn_problems(layer) == [], layer.name


def test_the_eligibility_check_can_fail():
    layer = keras.layers.LSTM(4, activation="relu", recurrent_dropout=0.1)
    assert len(cudnn_problems(layer)) == 2


@pytest.mark.parametrize(
    "setting, expected", [("auto", "auto"), ("true", True), ("false", False)]
)
def test_use_cudnn_reaches_every_lstm_and_gru_layer_of_any_model(setting, expected):
    for script in ("train_gru", "train_lstm", "train_bilstm", "train_imdb_bilstm"):
        model = build(script, units=8)
        training.use_cudnn(model, setting)
        assert [layer.use_cudnn for layer in recurrent(model)] == [expected] * len(
            recurrent(model)
        )


def test_simplernn_is_relu_as_the_published_recipe():
    assert [
        keras.activations.serialize(layer.cell.activation)
        for layer in recurrent(build("train_simplernn"))
    ] == ["relu"] * 2


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_16_bits_but_keeps_float32_outputs(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        for script in MNIST_MODELS + ("train_imdb_bilstm",):
            model = build(script, units=8)
            assert model.layers[0].compute_dtype == policy.split("_")[1]
            assert model.layers[-1].compute_dtype == "float32"
            assert model.layers[-1].variable_dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


# --------------------------------------------------------------------------------------
# The output: what build() makes of it
# --------------------------------------------------------------------------------------
def ending(last, width=10, features=28):
    def build_model():
        inputs = keras.Input(shape=(None, features))
        x = keras.layers.LSTM(4)(inputs)
        return keras.Model(inputs, last(x, width))

    return build_model


@pytest.mark.parametrize(
    "last, width, classes, expected",
    [
        (lambda x, w: keras.layers.Dense(w)(x), 10, 10, "logits"),
        (
            lambda x, w: keras.layers.Dense(w, activation="softmax")(x),
            10,
            10,
            "probabilities",
        ),
        (
            lambda x, w: keras.layers.Softmax()(keras.layers.Dense(w)(x)),
            10,
            10,
            "probabilities",
        ),
        (
            lambda x, w: keras.layers.Activation("softmax")(keras.layers.Dense(w)(x)),
            10,
            10,
            "probabilities",
        ),
        (
            lambda x, w: keras.ops.softmax(keras.layers.Dense(w)(x)),
            10,
            10,
            "probabilities",
        ),
        (
            lambda x, w: keras.layers.Dense(w, activation="sigmoid")(x),
            1,
            2,
            "probabilities",
        ),
        (lambda x, w: keras.layers.Dense(w)(x), 1, 2, "logits"),
        (
            lambda x, w: keras.layers.Reshape((w,))(keras.layers.Dense(w)(x)),
            10,
            10,
            "logits",
        ),
    ],
)
def test_the_output_layer_is_read_as_logits_or_probabilities(
    last, width, classes, expected
):
    _, output = training.build(ending(last, width), {}, preprocessing_for(classes))
    assert output == expected


@pytest.mark.parametrize(
    "last, width, classes, words",
    [
        (
            lambda x, w: keras.layers.Dense(w, activation="relu")(x),
            10,
            10,
            "applies relu to 10 unit(s)",
        ),
        (
            lambda x, w: keras.layers.Dense(w, activation="sigmoid")(x),
            3,
            3,
            "applies sigmoid to 3 unit(s)",
        ),
        (
            lambda x, w: keras.layers.Dense(w, activation="softmax")(x),
            1,
            2,
            "applies softmax to 1 unit(s)",
        ),
        (
            lambda x, w: keras.layers.Dense(w)(x),
            7,
            10,
            "7 units but the data have 10 classes",
        ),
    ],
)
def test_an_output_the_pipeline_cannot_read_is_one_line(last, width, classes, words):
    with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")):
        training.build(ending(last, width), {}, preprocessing_for(classes))


def test_a_regression_output_is_mapped_back_to_the_targets_units():
    model, output = training.build(
        ending(lambda x, w: keras.layers.Dense(w)(x), 2),
        {},
        preprocessing_for(targets=2),
    )
    assert output == "values" and model.layers[-1].name == "target_units"
    inputs = np.zeros((1, 5, 28), np.float32)
    inner = keras.Model(model.inputs, model.layers[-2].output)
    np.testing.assert_allclose(
        model.predict(inputs, verbose=0),
        inner.predict(inputs, verbose=0) * 10 + 100,
        rtol=1e-6,
    )
    with pytest.raises(UserError, match="3 units but the data have 2 target value"):
        training.build(
            ending(lambda x, w: keras.layers.Dense(3)(x), 3),
            {},
            preprocessing_for(targets=2),
        )


def test_a_build_model_that_returns_no_model_or_refuses_its_arguments_is_one_line():
    with pytest.raises(UserError, match="must return a Keras model"):
        training.build(lambda: None, {}, preprocessing_for())
    with pytest.raises(UserError, match=r"build_model\(units=-1\) failed"):
        training.build(
            lambda units: keras.layers.Dense(units), {"units": -1}, preprocessing_for()
        )


def test_the_architecture_hash_sees_layer_settings_not_names():
    first, second = build("train_lstm", units=8), build("train_lstm", units=8)
    assert training.architecture_of(first) == training.architecture_of(second)
    backwards = keras.Sequential(
        [
            keras.Input((None, 28)),
            keras.layers.LSTM(8, return_sequences=True),
            keras.layers.LSTM(8, go_backwards=True),
            keras.layers.Dense(10),
        ]
    )
    assert training.architecture_of(backwards) != training.architecture_of(first)


# --------------------------------------------------------------------------------------
# The recipes of docs/recipes.md
# --------------------------------------------------------------------------------------
def documented_recipes():
    """(command, parameters) of each row of docs/recipes.md's tutorial table."""
    text = (
        (ROOT / "docs" / "recipes.md")
        .read_text()
        .split("## The tutorials", 1)[1]
        .split("\n## ", 1)[0]
    )
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
    ]
    return [
        (row[1].strip("`"), int(row[2].replace(",", "")))
        for row in rows
        if row[1:2] and row[1].startswith("`python ")
    ]


@pytest.mark.parametrize("command, parameters", documented_recipes())
def test_each_documented_recipe_command_builds_the_recipes_parameter_count(
    command, parameters
):
    _, script, *argv = shlex.split(command)
    build_model = importlib.import_module(script.removesuffix(".py")).build_model
    contract = read_contract(build_model, "sequences", cli.reserved_names())
    config = cli.parse_arguments(script, None, contract, cli.ScriptDefaults(), argv)[0]
    # MNIST's shape
    options = contract.model_options(config, preprocessing_for().model_options())
    assert (
        training.build(build_model, options, preprocessing_for())[0].count_params()
        == parameters
    )
