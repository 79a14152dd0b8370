"""Predict with a finished run: images, arrays, texts, or a labelled file to evaluate.

python predict.py RUN digit.png other.png     # image runs
python predict.py RUN examples.npy            # arrays shaped like the run's examples
python predict.py RUN "a wonderful film" -    # text runs: sentences, files, - = stdin
python predict.py RUN test.csv --labels       # predictions.csv and the metrics
python predict.py --help                      # everything else

Outside this repository, with the package installed: python -m rnn_scripts.predict ...
"""

from rnn_scripts.predict import main

if __name__ == "__main__":
    main()
