_base_ = './_base_/effdet_lite_coco.py'
# EfficientDet-Lite4: EfficientNet-Lite4 -> BiFPN (224 ch x 7, sum fusion) -> nets x4, 640 px.
image_size = 640
model = dict(
    backbone=dict(arch='lite4'),
    neck=dict(arch='lite4', in_channels=[56, 160, 448]),
    bbox_head=dict(arch='lite4'))
train_pipeline, test_pipeline = _base_.train_pipeline, _base_.test_pipeline
# RandomResize, RandomCrop and Resize to the input size
train_pipeline[2].scale = train_pipeline[3].crop_size = test_pipeline[1].scale = (image_size, ) * 2
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
