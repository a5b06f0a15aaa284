"""Export an EfficientDet config + checkpoint to ONNX, anchor decoding and hard NMS included
(``--help``; the code is :mod:`effdet_plugin.deploy.export`, docs/deploy.md)."""
from effdet_plugin.deploy.export import main

if __name__ == '__main__':
    main()
