# Nuclei semantic segmentation (background / nucleus): EffDetMultiTask with EffDetSegHead only
# on EfficientNet-Lite0 (ImageNet) + BiFPN, trained on the converter's semantic masks
# (data/nuclei/semantic/{train,val}), IoU on the held-out strip with EffDetSemSegMetric.
_base_ = ['./_base_/models/effdet_lite0.py', './_base_/nuclei_instance.py',
          './_base_/finetune_cpu.py']
seg_classes = ('background', 'nucleus')
model = dict(
    type='EffDetMultiTask',
    data_preprocessor=dict(pad_seg=True, seg_pad_value=255),
    bbox_head=None,
    seg_head=dict(
        type='EffDetSegHead',
        num_classes=len(seg_classes),
        arch='lite0',
        in_levels=(0, 1),
        out_stride=4,
        norm_cfg=_base_.norm_cfg,
        act_cfg=dict(type='ReLU6')))
train_pipeline = _base_.train_pipeline
train_pipeline[1].with_seg = True  # gt_seg_map follows every AlbuCompat / crop / flip step
test_pipeline = _base_.test_pipeline
test_pipeline[-2].update(with_bbox=False, with_seg=True)  # the LoadAnnotations step
train_dataloader = dict(
    dataset=dict(data_prefix=dict(seg='semantic/train/'), pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(data_prefix=dict(seg='semantic/val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='EffDetSemSegMetric', classes=seg_classes,
                     iou_metrics=['mIoU'])
test_evaluator = val_evaluator
default_hooks = dict(checkpoint=dict(save_best='semseg/mIoU'))
