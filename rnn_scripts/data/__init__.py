"""Every data source, checked at the edge: official files, the shipped sample, generated
data, and your own files (own.py). A source returns raw examples (pixels, values, word ids
or texts) in a train split and, where it brings them, test and validation splits;
preprocess.py turns examples into the model's input.

    official.py  MNIST, Fashion-MNIST, IMDB, the MNIST sample, --synthetic
    own.py       --data (.npz here; tables.py for .csv/.tsv, folders.py for text folders,
                 series.py for --target forecasting), --validation-data, --test-data
    rows.py      examples read from disk batch by batch (larger than memory)
"""

from .core import Data, DataError, Split, Targets  # noqa: F401


def load(config, reads):
    """The data the configuration names, limited and split into train, validation, test."""
    if config.data is not None and config.target is not None:
        from .series import load_series

        data = load_series(config)
    elif config.data is not None:
        from .own import load_own

        data = load_own(config, reads)
    elif reads == "text":
        from .official import load_imdb

        data = load_imdb(config)
    else:
        from .official import load_images

        data = load_images(config)
    if config.limit is not None:
        data.limit(config.limit)
    data.hold_out(config.validation_split, config.seed)
    data.check_not_empty()
    return data
