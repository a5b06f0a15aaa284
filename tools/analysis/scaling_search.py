"""Search the compound-scaling coefficients (alpha, beta, gamma) on your own data
(``--help`` for the recipe; the study is :mod:`effdet_plugin.studies.scaling.search`)."""
import sys

from effdet_plugin.studies.scaling.search import main

if __name__ == '__main__':
    sys.exit(0 if main() is not None else 1)
