"""rnn-scripts: the pipeline behind the train_*.py scripts, from the bottom floor up.

    errors, config, contract, cli, environment, rundir     before Keras loads
    data/ (official, own, tables, folders, series, rows), preprocess, feed
    devices, cluster, speedups/
    training, outputs, serving, export
    pipeline (run) -> session                              what common.run is

Importing the package changes nothing and loads no backend.
"""

__version__ = "0.4.0"
