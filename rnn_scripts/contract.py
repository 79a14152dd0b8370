"""The contract between a script and the pipeline, read from `build_model`'s signature.

    def build_model(features, outputs, units=256, num_layers=2, dropout=0.0): ...
    common.run(build_model, reads="sequences")

- `reads` says what the script takes: "sequences" (float sequences; images are read row by
  row) or "text" (texts, or word ids).
- A parameter named in DATA_PARAMETERS is filled from the data (a default it has is unused).
- Every other parameter needs a default, and the default makes it a flag of the same name:
  units=256 -> --units 256, num_layers=2 -> --num-layers 2, dropout=0.0 -> --dropout 0.0.
  The flag's type is the default's: an int of 1 or more takes positive integers, any other
  int integers, a float finite numbers, a str text, None text or nothing, and a bool makes
  --name / --no-name. A line "name: text" in build_model's docstring is the flag's help.

Nothing here imports Keras: the contract is read before the command line is parsed.
"""

import inspect
import re
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
FLAG_TYPES = (bool, int, float, str, type(None))


class ContractError(UserError):
    """build_model's signature does not fit the contract; names the parameter."""


@dataclass(frozen=True)
class ModelFlag:
    """A flag made from one keyword parameter of build_model."""

    name: str
    default: object
    help: str

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
    data_parameters, flags = [], []
    for parameter in inspect.signature(build_model).parameters.values():
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
            known = ", ".join(DATA_PARAMETERS)
            raise ContractError(
                f"build_model's parameter {name!r} has no default and is not one the data "
                f"fill ({known}): give it a default to make it a flag --{name.replace('_', '-')}"
            )
        elif name in reserved:
            raise ContractError(
                f"build_model's parameter {name!r} is also one of the pipeline's own flags "
                f"(--{name.replace('_', '-')}); rename it"
            )
        elif type(parameter.default) not in FLAG_TYPES:
            raise ContractError(
                f"build_model's parameter {name!r} has a default of type "
                f"{type(parameter.default).__name__}; a flag takes int, float, str, bool or None"
            )
        else:
            flags.append(
                ModelFlag(
                    name, parameter.default, helps.get(name, "build_model's " + name)
                )
            )
    return Contract(reads, tuple(data_parameters), tuple(flags))


def parameter_help(docstring):
    """{name: text} from docstring lines such as "    units: units per layer"."""
    found = re.findall(r"^\s*([A-Za-z_]\w*)\s*:\s*(\S.*)$", docstring, re.MULTILINE)
    return {name: text.strip() for name, text in found}
