"""Parameters and FLOPs of EfficientDet configs at their official input size, beside the paper
(``--help``; the code is :mod:`effdet_plugin.studies.flops`)."""
import sys

from effdet_plugin.studies.flops import main

if __name__ == '__main__':
    sys.exit(main())
