_base_ = './_base_/effdet_coco.py'
# EfficientDet-D2: EfficientNet-B2 -> BiFPN (112 ch x 5) -> class/box nets (3 layers), 768 px.
image_size = 768
model = dict(
    backbone=dict(arch='b2'),
    neck=dict(arch='d2', in_channels=[48, 120, 352]),
    bbox_head=dict(arch='d2'))
train_pipeline, test_pipeline = _base_.train_pipeline, _base_.test_pipeline
# RandomResize, RandomCrop and Resize to the input size
train_pipeline[2].scale = train_pipeline[3].crop_size = test_pipeline[1].scale = (image_size, ) * 2
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
