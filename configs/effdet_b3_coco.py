_base_ = './_base_/effdet_coco.py'
# EfficientDet-D3: EfficientNet-B3 -> BiFPN (160 ch x 6) -> class/box nets (4 layers), 896 px.
image_size = 896
model = dict(
    backbone=dict(arch='b3'),
    neck=dict(arch='d3', in_channels=[48, 136, 384]),
    bbox_head=dict(arch='d3'))
train_pipeline, test_pipeline = _base_.train_pipeline, _base_.test_pipeline
# RandomResize, RandomCrop and Resize to the input size
train_pipeline[2].scale = train_pipeline[3].crop_size = test_pipeline[1].scale = (image_size, ) * 2
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
