"""Convert official EfficientDet COCO weights (efficientdet-pytorch) into our checkpoints
(``--help``; the code is :mod:`effdet_plugin.cli.convert_effdet_weights` and
:mod:`effdet_plugin.checkpoint.effdet_release`)."""
import sys

from effdet_plugin.cli.convert_effdet_weights import main

if __name__ == '__main__':
    sys.exit(main())
