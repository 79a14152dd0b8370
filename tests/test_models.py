"""The five default models: shapes for any sequence length, parameter counts, cuDNN paths."""

import importlib
import shlex

import keras
import numpy as np
import pytest

from helpers import ROOT

MNIST_MODELS = ("train_simplernn", "train_gru", "train_lstm", "train_bilstm")


def build(script, **options):
    return importlib.import_module(script).build_model(**options)


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
    "train_imdb_bilstm": 20000 * 64 + 2 * lstm(64, 64) + dense(128, 64) + dense(64, 1),
}


@pytest.mark.parametrize("script", sorted(EXPECTED_PARAMETERS))
def test_parameter_count_equals_the_analytic_formula(script):
    assert build(script).count_params() == EXPECTED_PARAMETERS[script]


@pytest.mark.parametrize(
    "script, options, expected",
    [
        ("train_simplernn", {"units": 128, "num_layers": 1}, simple_rnn(28, 128) + dense(128, 10)),
        ("train_simplernn", {"units": 16, "num_layers": 1}, 890),  # the tutorial's count
        ("train_lstm", {"units": 100, "num_layers": 1}, lstm(28, 100) + dense(100, 10)),
        ("train_gru", {"units": 8, "num_layers": 3}, gru(28, 8) + 2 * gru(8, 8) + dense(8, 10)),
        ("train_bilstm", {"units": 8, "num_layers": 1}, 2 * lstm(28, 8) + dense(16, 10)),
        ("train_lstm", {"features": 3, "classes": 4, "units": 8}, lstm(3, 8) + lstm(8, 8) + dense(8, 4)),
        ("train_imdb_bilstm", {"vocab_size": 50, "classes": 3, "units": 8}, 50 * 64 + 2 * lstm(64, 8) + dense(16, 64) + dense(64, 3)),
    ],
)
def test_layers_features_and_classes_shape_the_model(script, options, expected):
    assert build(script, **options).count_params() == expected


@pytest.mark.parametrize("script", MNIST_MODELS)
@pytest.mark.parametrize("steps", [28, 7, 41])
def test_mnist_models_give_ten_logits_for_any_sequence_length(script, steps):
    model = build(script, units=16, features=5, classes=7)
    logits = model.predict(np.random.rand(3, steps, 5).astype("float32"), verbose=0)
    assert logits.shape == (3, 7) and logits.dtype == np.float32


@pytest.mark.parametrize("length", [200, 37])
def test_imdb_model_gives_one_logit_and_ignores_padding(length):
    model = build("train_imdb_bilstm", vocab_size=100, units=8)
    words = np.random.default_rng(0).integers(1, 100, (2, length)).astype("int32")
    padded = np.concatenate([words, np.zeros((2, 15), "int32")], axis=1)
    out, out_padded = model.predict(words, verbose=0), model.predict(padded, verbose=0)
    assert out.shape == (2, 1)
    np.testing.assert_allclose(
        out, out_padded, atol=1e-5
    )  # the mask hides trailing zeros


def recurrent_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.layers.Bidirectional):
            yield layer.forward_layer
            yield layer.backward_layer
        elif isinstance(layer, keras.layers.RNN):
            yield layer


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


@pytest.mark.parametrize(
    "script", ["train_gru", "train_lstm", "train_bilstm", "train_imdb_bilstm"]
)
def test_every_gated_recurrent_layer_is_cudnn_eligible(script):
    layers = list(recurrent_layers(build(script)))
    assert layers and all(
        isinstance(l, (keras.layers.LSTM, keras.layers.GRU)) for l in layers
    )
    for layer in layers:
        assert cudnn_problems(layer) == [], layer.name


def test_the_eligibility_check_can_fail():
    layer = keras.layers.LSTM(4, activation="relu", recurrent_dropout=0.1)
    assert len(cudnn_problems(layer)) == 2


@pytest.mark.parametrize("setting", ["auto", True, False])
def test_use_cudnn_passes_through_to_every_layer(setting):
    for script in ("train_gru", "train_lstm", "train_bilstm", "train_imdb_bilstm"):
        for layer in recurrent_layers(build(script, units=8, use_cudnn=setting)):
            assert layer.use_cudnn == setting


def test_simplernn_is_relu_as_the_published_recipe():
    layers = list(recurrent_layers(build("train_simplernn")))
    assert [keras.activations.serialize(l.cell.activation) for l in layers] == [
        "relu"
    ] * 2


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_16_bits_but_keeps_float32_logits(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        for script in MNIST_MODELS + ("train_imdb_bilstm",):
            model = build(script, units=8)
            assert model.layers[0].compute_dtype == policy.split("_")[1]
            assert model.layers[-1].compute_dtype == "float32"
            assert model.layers[-1].variable_dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def readme_recipes():
    """(command, parameters) of each row of the README's recipe table."""
    section = (ROOT / "README.md").read_text().split("## Recipes", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in section.splitlines()]
    return [(row[1].strip("`"), int(row[2].replace(",", ""))) for row in rows if row[1:2] and row[1].startswith("`python ")]


def test_the_readme_has_a_recipe_row_for_each_tutorial_and_each_default():
    assert len(readme_recipes()) == 7


@pytest.mark.parametrize("command, parameters", readme_recipes())
def test_each_readme_recipe_command_builds_the_recipes_parameter_count(command, parameters):
    import common
    from rnn_scripts import cli, training

    _, script, *argv = shlex.split(command)
    build_model = importlib.import_module(script.removesuffix(".py")).build_model
    defaults = common.script_defaults(build_model, epochs=10)
    args = cli.parse_arguments(script, None, defaults, argv)[0]
    options = {**common.model_arguments(args), "features": 28, "classes": 10}  # MNIST
    assert training.build(build_model, options).count_params() == parameters
