_base_ = './_base_/effdet_lite_coco.py'
# EfficientDet-Lite4: EfficientNet-Lite4 backbone, BiFPN 224 ch x 7, head 4 layers, 640 input, sum fusion.
image_size = 640
model = dict(
    backbone=dict(arch='lite4'),
    neck=dict(in_channels=[56, 160, 448], arch='lite4'),
    bbox_head=dict(arch='lite4'))
train_pipeline = _base_.train_pipeline
train_pipeline[2].scale = train_pipeline[3].crop_size = (image_size, image_size)
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = (image_size, image_size)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
