"""The contract between a script and the pipeline, read from `build_model`'s signature.

    def build_model(features, outputs, units=256, num_layers=2, dropout=0.0): ...
    common.run(build_model, reads="sequences")

- `reads` says what the script takes: "sequences" (float sequences; images are read row
  by row) or "text" (texts, or word ids).
- A parameter named in DATA_PARAMETERS is filled from the data (a default it has is
  unused).
- Every other parameter needs a default, and the default makes it a flag of the same
  name: units=256 -> --units 256, num_layers=2 -> --num-layers 2, dropout=0.0 ->
  --dropout 0.0. The flag's type is the annotation's where there is one (float | None,
  Optional[int], bool, Literal["a", "b"] -> choices, list[int] -> several values), else
  the default's: an int of 1 or more takes positive integers, any other int integers, a
  float finite numbers, a str text, a bool --name / --no-name, and None (no annotation)
  text or nothing. A line "name: text" in build_model's docstring is the flag's help.

Nothing here imports Keras: the contract is read before the command line is parsed.
"""

import inspect
import re
import types
import typing
from dataclasses import dataclass

from .errors import UserError

READS = {
    "sequences": "float sequences (N, steps, features); images are read row by row",
    "text": "texts (a .csv column or a folder of .txt files per class), or word ids",
}
DATA_PARAMETERS = {
    "features": "values per time step",
    "steps": "time steps per example (None where they vary)",
    "outputs": "units of the output layer: one per class, or one per target value",
    "classes": "the number of classes (classification runs only)",
    "vocab_size": "the vocabulary's size, padding and unknown-word ids included (text)",
}
TYPES = {bool: "bool", int: "int", float: "float", str: "str"}


class ContractError(UserError):
    """build_model's signature does not fit the contract; names the parameter."""


@dataclass(frozen=True)
class ModelFlag:
    """A flag made from one keyword parameter of build_model: its value's type ("bool",
    "int", "float", "str"), whether it may be left out (None), its choices, and
    whether it takes several values."""

    name: str
    default: object
    help: str
    type: str = "str"
    optional: bool = True
    choices: tuple = None
    many: bool = False

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Contract:
    reads: str
    data_parameters: tuple
    flags: tuple

    def model_options(self, config, data_options):
        """build_model's arguments: the flags' values and what the data fill in."""
        options = {flag.name: getattr(config, flag.name) for flag in self.flags}
        options.update({name: data_options[name] for name in self.data_parameters})
        return options


def read_contract(build_model, reads, reserved=()):
    """The Contract of build_model; ContractError (one line) where it cannot be one.
    `reserved`: the pipeline's own argument names, which a model flag may not take."""
    if reads not in READS:
        raise ContractError(
            f"run(reads={reads!r}): expected one of {', '.join(map(repr, READS))}"
        )
    if not callable(build_model):
        raise ContractError(
            f"run() needs a function build_model, got {type(build_model).__name__}"
        )
    helps = parameter_help(build_model.__doc__ or "")
    try:
        parameters = inspect.signature(build_model, eval_str=True).parameters.values()
    except (NameError, SyntaxError, TypeError) as error:
        raise ContractError(
            f"build_model's annotations cannot be read ({error})"
        ) from None
    data_parameters, flags = [], []
    for parameter in parameters:
        name = parameter.name
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ContractError(f"build_model(*{name}/**{name}): name each parameter")
        if parameter.kind == parameter.POSITIONAL_ONLY:
            raise ContractError(
                f"build_model's parameter {name!r} is positional-only; drop the /"
            )
        if name in DATA_PARAMETERS:
            data_parameters.append(name)
        elif parameter.default is parameter.empty:
            raise ContractError(
                f"build_model's parameter {name!r} has no default and is not one the "
                f"data fill ({', '.join(DATA_PARAMETERS)}): give it a default to make "
                f"it a flag --{name.replace('_', '-')}"
            )
        elif name in reserved:
            raise ContractError(
                f"build_model's parameter {name!r} is also one of the pipeline's own "
                f"flags (--{name.replace('_', '-')}); rename it"
            )
        else:
            flags.append(model_flag(parameter, helps.get(name, "build_model's " + name)))
    check_names(flags)
    return Contract(reads, tuple(data_parameters), tuple(flags))


def model_flag(parameter, help_text):
    """The ModelFlag of one keyword parameter: from its annotation, else its default."""
    name, default, annotation = parameter.name, parameter.default, parameter.annotation
    if annotation is parameter.empty:
        kind = TYPES.get(type(default), "str" if default is None else None)
        if kind is None:
            raise ContractError(
                f"build_model's parameter {name!r} has a default of type "
                f"{type(default).__name__}; a flag takes int, float, str, bool or None "
                "(or annotate it: list[int], Literal[...])"
            )
        return ModelFlag(name, default, help_text, kind, default is None)
    found = read_annotation(name, annotation)
    flag = ModelFlag(name, default, help_text, *found)
    if default is None and not flag.optional:
        raise ContractError(
            f"build_model's parameter {name!r} defaults to None; annotate it "
            f"{annotation} | None"
        )
    return flag


def read_annotation(name, annotation):
    """(type, optional, choices, many) from float | None, Optional[int], bool,
    Literal[...], list[int]; a one-line refusal for what a flag cannot take."""
    arguments = typing.get_args(annotation)
    optional = type(None) in arguments
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        others = [a for a in arguments if a is not type(None)]
        if len(others) == 1:
            kind, _, choices, many = read_annotation(name, others[0])
            return kind, optional, choices, many
    elif typing.get_origin(annotation) is typing.Literal:
        kinds = {TYPES.get(type(a)) for a in arguments}
        if len(kinds) == 1 and None not in kinds:
            return kinds.pop(), False, tuple(arguments), False
    elif typing.get_origin(annotation) in (list, tuple) and arguments:
        if (
            arguments[0] in TYPES
            and arguments[0] is not bool
            and (len(arguments) == 1 or arguments[1] is Ellipsis)
        ):
            return TYPES[arguments[0]], False, None, True
    elif annotation in TYPES:
        return TYPES[annotation], False, None, False
    raise ContractError(
        f"build_model's parameter {name!r} is annotated {annotation}; a flag takes "
        "bool, int, float, str, one of them | None, Literal[...] or list[int] (and "
        "the like)"
    )


def check_names(flags):
    """argparse would fail on --no-X beside a bool X's own --no-X."""
    names = {flag.flag for flag in flags}
    for flag in flags:
        negative = "--no-" + flag.flag[2:]
        if flag.type == "bool" and not flag.many and negative in names:
            other = negative[2:].replace("-", "_")
            raise ContractError(
                f"build_model's parameter {other!r} is also the flag that turns off "
                f"{flag.name!r} ({negative}); rename one of them"
            )


def parameter_help(docstring):
    """{name: text} from docstring lines such as "    units: units per layer"."""
    found = re.findall(r"^\s*([A-Za-z_]\w*)\s*:\s*(\S.*)$", docstring, re.MULTILINE)
    return {name: text.strip() for name, text in found}
