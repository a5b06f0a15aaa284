"""Convert torchvision / timm / efficientnet-pytorch EfficientNet weights for ``EffNet``
(``--help``; the code is :mod:`effdet_plugin.cli.convert_weights`)."""
import sys

from effdet_plugin.cli.convert_weights import main

if __name__ == '__main__':
    sys.exit(main())
