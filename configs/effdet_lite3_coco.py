_base_ = './_base_/effdet_lite_coco.py'
# EfficientDet-Lite3: EfficientNet-Lite3 -> BiFPN (160 ch x 6, sum fusion) -> nets (4 layers),
# 512 px: the base's input size.
model = dict(
    backbone=dict(arch='lite3'),
    neck=dict(arch='lite3', in_channels=[48, 136, 384]),
    bbox_head=dict(arch='lite3'))
