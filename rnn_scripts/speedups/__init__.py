"""Speed-ups that replace private Keras code on one backend, kept apart from the pipeline:
the pipeline calls install(config) once, before any layer exists, and records what it
returns. --fused-kernels off leaves Keras' own code untouched."""

import keras


def install(config):
    """Install the speed-ups for this backend; {name: True if active}."""
    if config.fused_kernels == "off":
        return {}
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from . import gru_split

        return {"gru_split_cell": gru_split.install()}
    if backend == "torch":
        from . import torch_fused

        return {"torch_fused_cpu_kernels": torch_fused.install()}
    return {}


def uninstall():
    """Put Keras' own code back (harmless where nothing was installed)."""
    from . import gru_split

    gru_split.uninstall()
    if keras.backend.backend() == "torch":
        from . import torch_fused

        torch_fused.uninstall()
