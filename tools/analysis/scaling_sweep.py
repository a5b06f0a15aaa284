"""How big a model does your data need? Sweep phi, compound vs single-dimension scaling
(``--help``; the study is :mod:`effdet_plugin.studies.scaling.sweep`)."""
import sys

from effdet_plugin.studies.scaling.sweep import main

if __name__ == '__main__':
    sys.exit(0 if main() is not None else 1)
