_base_ = './_base_/effdet_lite_coco.py'
# EfficientDet-Lite0: EfficientNet-Lite0 backbone, BiFPN 64 ch x 3, head 3 layers, 320 input, anchor scale 3, sum fusion.
image_size = 320
model = dict(
    backbone=dict(arch='lite0'),
    neck=dict(in_channels=[40, 112, 320], arch='lite0'),
    bbox_head=dict(arch='lite0'))
train_pipeline = _base_.train_pipeline
train_pipeline[2].scale = train_pipeline[3].crop_size = (image_size, image_size)
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = (image_size, image_size)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
