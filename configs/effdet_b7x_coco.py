_base_ = './effdet_b7_coco.py'
# EfficientDet-D7x: D7's 1536 input and 600 epochs with an EfficientNet-B7 backbone, BiFPN
# 384 ch x 8, head 5 layers, anchor scale 4, sum fusion, levels P3-P8 (padding to 2^8).
model = dict(
    data_preprocessor=dict(pad_size_divisor=256),
    backbone=dict(arch='b7'),
    neck=dict(in_channels=[80, 224, 640], arch='d7x'),
    bbox_head=dict(arch='d7x'))
