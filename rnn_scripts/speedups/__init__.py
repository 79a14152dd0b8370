"""Speed-ups that replace private Keras or torch code on one backend, kept apart from the
pipeline: stages.py calls install(config) once, before any layer exists, and records
what it returns in metrics.json. Each speed-up (a module here) says which versions it
was tested with and how to check itself:

    NAME, BACKEND      its name in metrics.json, the backend it applies to
    TESTED             {package: (lowest version, first version not tested)}
    install(), uninstall(), installed()
    self_check()       None if, installed, it gives Keras' own results on a tiny input
                       (one forward and backward step), else what differs

A speed-up outside its tested versions, or whose self-check fails, stays off and says so
in one line; --fused-kernels off installs none, leaving Keras' own code untouched.
"""

import importlib
import importlib.metadata
import re

import keras

from ..errors import say

MODULES = ("gru_split", "torch_fused")


def modules():
    return [importlib.import_module(f"{__name__}.{name}") for name in MODULES]


def install(config):
    """Install the speed-ups for this backend; {name: "active" or "off: why"}."""
    if config.fused_kernels == "off":
        return {}
    report = {}
    for module in modules():
        if module.BACKEND != keras.backend.backend():
            continue
        problem = untested_version(module.TESTED)
        if problem is None:
            module.install()
            problem = checked(module)
        report[module.NAME] = "active" if problem is None else f"off: {problem}"
        if problem is not None:
            say(
                f"note: the {module.NAME} speed-up is off ({problem}); training runs "
                "Keras' own code"
            )
    return report


def checked(module):
    """The module's self-check; on any failure the speed-up is uninstalled."""
    try:
        problem = module.self_check()
    except Exception as error:  # a changed private API fails in many ways
        problem = f"its self-check failed: {type(error).__name__}: {error}"[:200]
    if problem is not None:
        module.uninstall()
    return problem


def untested_version(tested):
    """None if every package lies in its tested range, else which one does not."""
    for package, (lowest, beyond) in tested.items():
        found = installed_version(package)
        if found is None or not version(lowest) <= version(found) < version(beyond):
            tested = f"({lowest} up to {beyond})"
            return f"{package} {found} is not a version it was tested with {tested}"
    return None


def installed_version(package):
    module = importlib.import_module(package) if package == "keras" else None
    if module is not None:
        return module.__version__
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def version(text):
    """(2, 13, 0) from "2.13.0+cpu"."""
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def would_be_active(backend):
    """Whether the speed-ups of `backend` would be in the versions they were tested with
    in this environment (read without importing the backend)."""
    return all(
        untested_version(m.TESTED) is None for m in modules() if m.BACKEND == backend
    )


def uninstall():
    """Put Keras' own code back (harmless where nothing was installed)."""
    for module in modules():
        if module.BACKEND == keras.backend.backend():
            module.uninstall()
