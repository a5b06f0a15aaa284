_base_ = './_base_/effdet_coco.py'
# EfficientDet-D7: EfficientNet-B6 backbone, BiFPN 384 ch x 8, head 5 layers, 1536 input, anchor scale 5, sum fusion.
image_size = 1536
model = dict(
    backbone=dict(arch='b6'),
    neck=dict(in_channels=[72, 200, 576], arch='d7'),
    bbox_head=dict(arch='d7'))
train_pipeline = _base_.train_pipeline
train_pipeline[2].scale = train_pipeline[3].crop_size = (image_size, image_size)
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = (image_size, image_size)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# The official D7/D7x schedule is 600 epochs.
max_epochs = 600
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = _base_.param_scheduler
param_scheduler[1].end = max_epochs
param_scheduler[1].T_max = max_epochs - 1
