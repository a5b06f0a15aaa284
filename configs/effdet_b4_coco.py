_base_ = './_base_/effdet_coco.py'
# EfficientDet-D4: EfficientNet-B4 -> BiFPN (224 ch x 7) -> class/box nets (4 layers), 1024 px.
image_size = 1024
model = dict(
    backbone=dict(arch='b4'),
    neck=dict(arch='d4', in_channels=[56, 160, 448]),
    bbox_head=dict(arch='d4'))
train_pipeline, test_pipeline = _base_.train_pipeline, _base_.test_pipeline
# RandomResize, RandomCrop and Resize to the input size
train_pipeline[2].scale = train_pipeline[3].crop_size = test_pipeline[1].scale = (image_size, ) * 2
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
