_base_ = './_base_/effdet_lite_coco.py'
# EfficientDet-Lite3: EfficientNet-Lite3 backbone, BiFPN 160 ch x 6, head 4 layers, 512 input, sum fusion.
image_size = 512
model = dict(
    backbone=dict(arch='lite3'),
    neck=dict(in_channels=[48, 136, 384], arch='lite3'),
    bbox_head=dict(arch='lite3'))
train_pipeline = _base_.train_pipeline
train_pipeline[2].scale = train_pipeline[3].crop_size = (image_size, image_size)
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = (image_size, image_size)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
