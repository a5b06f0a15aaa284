_base_ = './_base_/effdet_coco.py'
# EfficientDet-D5: EfficientNet-B5 backbone, BiFPN 288 ch x 7, head 4 layers, 1280 input.
image_size = 1280
model = dict(
    backbone=dict(arch='b5'),
    neck=dict(in_channels=[64, 176, 512], arch='d5'),
    bbox_head=dict(arch='d5'))
train_pipeline = _base_.train_pipeline
train_pipeline[2].scale = train_pipeline[3].crop_size = (image_size, image_size)
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = (image_size, image_size)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
