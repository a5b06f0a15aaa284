_base_ = './effdet_b6_coco.py'
# EfficientDet-D7: D6's model with anchor scale 5 at 1536 px; 600 epochs (official).
image_size = 1536
model = dict(neck=dict(arch='d7'), bbox_head=dict(arch='d7'))
train_pipeline, test_pipeline = _base_.train_pipeline, _base_.test_pipeline
# RandomResize, RandomCrop and Resize to the input size
train_pipeline[2].scale = train_pipeline[3].crop_size = test_pipeline[1].scale = (image_size, ) * 2
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

max_epochs = 600
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=True, begin=1, end=max_epochs,
         T_max=max_epochs - 1, convert_to_iter_based=True),
]
