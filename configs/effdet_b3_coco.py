_base_ = './_base_/effdet_coco.py'
# EfficientDet-D3: EfficientNet-B3 backbone, BiFPN 160 ch x 6, head 4 layers, 896 input.
image_size = 896
model = dict(
    backbone=dict(arch='b3'),
    neck=dict(in_channels=[48, 136, 384], arch='d3'),
    bbox_head=dict(arch='d3'))
train_pipeline = _base_.train_pipeline
train_pipeline[2].scale = train_pipeline[3].crop_size = (image_size, image_size)
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = (image_size, image_size)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
