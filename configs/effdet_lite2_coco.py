_base_ = './_base_/effdet_lite_coco.py'
# EfficientDet-Lite2: EfficientNet-Lite2 backbone, BiFPN 112 ch x 5, head 3 layers, 448 input, anchor scale 3, sum fusion.
image_size = 448
model = dict(
    backbone=dict(arch='lite2'),
    neck=dict(in_channels=[48, 120, 352], arch='lite2'),
    bbox_head=dict(arch='lite2'))
train_pipeline = _base_.train_pipeline
train_pipeline[2].scale = train_pipeline[3].crop_size = (image_size, image_size)
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = (image_size, image_size)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
