"""EfficientNet compound-scaling table: multipliers, parameters and FLOPs per variant
(``--help``; the code is :mod:`effdet_plugin.studies.scaling.table`)."""
import sys

from effdet_plugin.studies.scaling.table import main

if __name__ == '__main__':
    sys.exit(main())
