"""Every data source, checked at the edge: official files, the shipped sample, generated
data, and your own files. A source returns raw examples (pixels, values, word ids or
texts) in a train split and, where it brings them, test and validation splits, tagged
with their kind (kinds.py), which turns them into the model's input.

    official.py  MNIST, Fashion-MNIST, IMDB, the MNIST sample, --synthetic
    own.py       --data: .npz, .csv/.tsv, text folders (folders.py), series (--target),
                 and --validation-data, --test-data
    arrays.py, tables.py, series.py, rows.py   the file readers below them

The readers take the few values they use (core.Layout for your files); load() is the one
place where the command line's flags become those values.
"""

from .core import Data, DataError, Layout, Split, Targets  # noqa: F401


def layout_of(config):
    """How the command line says to read your files."""
    return Layout(
        task=config.task,
        delimiter=config.delimiter,
        label=config.label_column,
        text=config.text_column,
        sequence=config.sequence_column,
        features=tuple(config.feature_columns or ()),
        ignore=tuple(config.ignore_columns or ()),
        target=config.target,
        window=config.window,
        horizon=config.horizon,
    )


def load(config, reads):
    """The data the configuration names, limited and split (train, validation, test)."""
    if config.data is not None:
        from .own import load_own, load_series

        paths = {
            "validation_path": config.validation_data,
            "test_path": config.test_data,
        }
        if config.target is not None:
            data = load_series(
                config.data, layout_of(config), config.validation_split, **paths
            )
        else:
            data = load_own(config.data, reads, layout_of(config), **paths)
    elif reads == "text":
        from .official import load_imdb

        data = load_imdb(
            config.vocab_size,
            config.data_dir,
            config.synthetic,
            config.seed,
            config.limit,
        )
    else:
        from .official import load_images

        data = load_images(
            config.dataset, config.data_dir, config.synthetic, config.seed, config.limit
        )
    if config.limit is not None:
        data.limit(config.limit)
    data.hold_out(config.validation_split, config.seed)
    data.check_not_empty()
    return data
