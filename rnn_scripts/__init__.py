"""The stages of the rnn-scripts pipeline; common.py beside this folder runs them in order.

errors, environment (before Keras loads) -> cli, rundir, data, preprocess -> devices
-> training, outputs -> common.py (the pipeline the scripts call).
"""
