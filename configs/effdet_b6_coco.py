_base_ = './effdet_b5_coco.py'
# EfficientDet-D6: EfficientNet-B6 -> BiFPN (384 ch x 8, sum fusion) -> class/box nets
# (5 layers), at D5's 1280 px.
model = dict(
    backbone=dict(arch='b6'),
    neck=dict(arch='d6', in_channels=[72, 200, 576]),
    bbox_head=dict(arch='d6'))
