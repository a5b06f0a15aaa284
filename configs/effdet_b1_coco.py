_base_ = './_base_/effdet_coco.py'
# EfficientDet-D1: EfficientNet-B1 -> BiFPN (88 ch x 4) -> class/box nets (3 layers), 640 px.
image_size = 640
model = dict(
    backbone=dict(arch='b1'),
    neck=dict(arch='d1', in_channels=[40, 112, 320]),
    bbox_head=dict(arch='d1'))
train_pipeline, test_pipeline = _base_.train_pipeline, _base_.test_pipeline
# RandomResize, RandomCrop and Resize to the input size
train_pipeline[2].scale = train_pipeline[3].crop_size = test_pipeline[1].scale = (image_size, ) * 2
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
