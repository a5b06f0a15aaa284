_base_ = './_base_/effdet_coco.py'
# EfficientDet-D0: EfficientNet-B0 backbone, BiFPN 64 ch x 3, head 3 layers, 512 input.
image_size = 512
model = dict(
    backbone=dict(arch='b0'),
    neck=dict(in_channels=[40, 112, 320], arch='d0'),
    bbox_head=dict(arch='d0'))
train_pipeline = _base_.train_pipeline
train_pipeline[2].scale = train_pipeline[3].crop_size = (image_size, image_size)
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = (image_size, image_size)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
