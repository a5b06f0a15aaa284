_base_ = './_base_/effdet_coco.py'
# EfficientDet-D0: EfficientNet-B0 -> BiFPN (64 ch x 3) -> class/box nets (3 layers), 512 px.
# The base is D0; every other variant overrides what differs from it.
