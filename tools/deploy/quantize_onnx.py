"""Quantise an exported EfficientDet to int8 with onnxruntime, calibrated on your training
images; post-processing stays float (``--help``; the code is
:mod:`effdet_plugin.deploy.quantize`, docs/deploy.md)."""
from effdet_plugin.deploy.quantize import main

if __name__ == '__main__':
    main()
