# What the EfficientDet-Lite COCO configs share on top of the D-family base: ReLU6 in the BiFPN
# and head (the backbone picks it from its Lite arch), and inputs scaled to [-1, 1], as the
# official Lite models (and effdet's tf_efficientdet_lite* weights) expect.
_base_ = './effdet_coco.py'
model = dict(
    data_preprocessor=dict(mean=[127.5] * 3, std=[127.5] * 3),
    neck=dict(act_cfg=dict(type='ReLU6')),
    bbox_head=dict(act_cfg=dict(type='ReLU6')))
