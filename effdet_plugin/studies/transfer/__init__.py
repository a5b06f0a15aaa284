"""The transfer evaluation: what pre-training buys and how much labelled data is needed
(starting points x shares of the training images x seeds). Command:
``tools/analysis/transfer_eval.py``."""
