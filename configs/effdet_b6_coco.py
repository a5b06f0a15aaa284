_base_ = './_base_/effdet_coco.py'
# EfficientDet-D6: EfficientNet-B6 backbone, BiFPN 384 ch x 8, head 5 layers, 1280 input, sum fusion.
image_size = 1280
model = dict(
    backbone=dict(arch='b6'),
    neck=dict(in_channels=[72, 200, 576], arch='d6'),
    bbox_head=dict(arch='d6'))
train_pipeline = _base_.train_pipeline
train_pipeline[2].scale = train_pipeline[3].crop_size = (image_size, image_size)
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = (image_size, image_size)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
