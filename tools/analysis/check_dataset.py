"""Check a dataset before training: counts per split and object sizes after the pipelines
(``--help``; the code is :mod:`effdet_plugin.cli.check_dataset`)."""
import sys

from effdet_plugin.cli.check_dataset import main

if __name__ == '__main__':
    sys.exit(main())
