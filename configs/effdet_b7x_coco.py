_base_ = './effdet_b7_coco.py'
# EfficientDet-D7x: D7 with an EfficientNet-B7 backbone, levels P3-P8 and anchor scale 4.
model = dict(
    data_preprocessor=dict(pad_size_divisor=256),  # 2 ** max_level
    backbone=dict(arch='b7'),
    neck=dict(arch='d7x', in_channels=[80, 224, 640]),
    bbox_head=dict(arch='d7x'))
