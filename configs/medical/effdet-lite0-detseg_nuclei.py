# Joint nuclei detection + semantic segmentation: EffDetHead and EffDetSegHead share the
# EfficientNet-Lite0 + BiFPN features; COCO bbox AP and foreground IoU on the held-out strip.
_base_ = './effdet-lite0-seg_nuclei.py'
model = dict(bbox_head=dict(_delete_=True, type='EffDetHead', num_classes=1, arch='lite0',
                            norm_cfg=_base_.norm_cfg, act_cfg=dict(type='ReLU6')))
test_pipeline = _base_.test_pipeline
test_pipeline[-2].with_bbox = True
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='CocoMetric', ann_file=_base_.data_root + 'annotations/instances_val.json',
         metric='bbox'),
    _base_.val_evaluator,
]
test_evaluator = val_evaluator
