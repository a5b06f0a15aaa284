_base_ = './_base_/effdet_coco.py'
# EfficientDet-D5: EfficientNet-B5 -> BiFPN (288 ch x 7) -> class/box nets (4 layers), 1280 px.
image_size = 1280
model = dict(
    backbone=dict(arch='b5'),
    neck=dict(arch='d5', in_channels=[64, 176, 512]),
    bbox_head=dict(arch='d5'))
train_pipeline, test_pipeline = _base_.train_pipeline, _base_.test_pipeline
# RandomResize, RandomCrop and Resize to the input size
train_pipeline[2].scale = train_pipeline[3].crop_size = test_pipeline[1].scale = (image_size, ) * 2
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
