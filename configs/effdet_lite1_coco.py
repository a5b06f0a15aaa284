_base_ = './_base_/effdet_lite_coco.py'
# EfficientDet-Lite1: EfficientNet-Lite1 -> BiFPN (88 ch x 4, sum fusion) -> nets x3, 384 px.
image_size = 384
model = dict(
    backbone=dict(arch='lite1'),
    neck=dict(arch='lite1', in_channels=[40, 112, 320]),
    bbox_head=dict(arch='lite1'))
train_pipeline, test_pipeline = _base_.train_pipeline, _base_.test_pipeline
# RandomResize, RandomCrop and Resize to the input size
train_pipeline[2].scale = train_pipeline[3].crop_size = test_pipeline[1].scale = (image_size, ) * 2
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
