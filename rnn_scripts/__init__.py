"""rnn-scripts: the pipeline behind the train_*.py scripts. Where each concern lives:

    the template's contract  contract.py  build_model's keywords -> typed flags
    the command line         cli.py, config.py (the Config of one run)
    a run                    pipeline.py  run(), the Run context, the one-line edge
                             stages.py    the stages once Keras is in
    new run, resume, refuse  resume.py (what is restored), rundir.py (the folder,
                             its lock, whole-file writes, saved epochs)
    a kind of examples       kinds.py     Images, Sequences, Series, WordIds, Texts:
                             statistics, preparation, export layers, predict's input
    data sources             data/        official sets, your files (Layout, never
                             the Config), file readers; data.load is where flags
                             become reader options
    training                 training.py (build, compile, fit), feed.py (batches)
    outputs and serving      outputs.py, serving.py (TrainedRun), export.py,
                             predict.py
    machines                 devices.py, cluster.py, environment.py; speedups/
                             (private Keras/torch code, version-guarded)

Imports go one way: errors and config at the bottom, then contract, cli, rundir,
resume, the data readers, kinds, data sources, training, stages, pipeline. Importing the
package changes nothing and loads no backend.
"""

__version__ = "0.4.0"
