_base_ = './_base_/effdet_coco.py'
# EfficientDet-D2: EfficientNet-B2 backbone, BiFPN 112 ch x 5, head 3 layers, 768 input.
image_size = 768
model = dict(
    backbone=dict(arch='b2'),
    neck=dict(in_channels=[48, 120, 352], arch='d2'),
    bbox_head=dict(arch='d2'))
train_pipeline = _base_.train_pipeline
train_pipeline[2].scale = train_pipeline[3].crop_size = (image_size, image_size)
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = (image_size, image_size)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
