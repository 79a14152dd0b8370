"""One run's arguments, built once (from the command line, or from args.json when a run
continues) and never changed afterwards: the stages read it, none of them writes to
it."""

from pathlib import Path
from types import MappingProxyType

PATH_ARGUMENTS = (
    "data",
    "validation_data",
    "test_data",
    "data_dir",
    "output_dir",
    "resume",
)


class Config:
    """Every argument of a run by name (config.batch_size); `replace` makes a new one."""

    __slots__ = ("_values",)

    def __init__(self, values):
        object.__setattr__(self, "_values", MappingProxyType(dict(values)))

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no argument {name!r}") from None

    def __setattr__(self, name, value):
        raise AttributeError(f"a Config does not change (set {name!r} with replace())")

    def __contains__(self, name):
        return name in self._values

    def __eq__(self, other):
        return isinstance(other, Config) and self._values == other._values

    def __repr__(self):
        return f"Config({dict(self._values)!r})"

    def replace(self, **changes):
        unknown = set(changes) - set(self._values)
        if unknown:
            raise AttributeError(f"no argument {sorted(unknown)[0]!r}")
        return Config({**self._values, **changes})

    def items(self):
        return self._values.items()

    def to_json(self):
        return {
            k: (str(v) if isinstance(v, Path) else v) for k, v in self._values.items()
        }

    @classmethod
    def from_json(cls, values):
        return cls(
            {
                k: (Path(v) if k in PATH_ARGUMENTS and v is not None else v)
                for k, v in values.items()
            }
        )
