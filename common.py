"""The scripts' shared module: `import common`, then `common.run(build_model,
reads=...)`.

The pipeline itself is the rnn_scripts package (`pip install .` in this repository):
run's docstring (`python -c "import common; help(common.run)"`) and README.md's "The
template contract" say what a script's build_model and run() call may contain. To start a
project of your own, copy a train_*.py script and this file into your folder.
"""

from rnn_scripts.pipeline import run  # noqa: F401
