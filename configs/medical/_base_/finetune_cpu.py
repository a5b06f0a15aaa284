# A short CPU fine-tuning schedule: AdamW, linear warm-up then cosine, iteration based, EMA with
# a fast warm-up; evaluation and one checkpoint every `val_interval` iterations.
# tools/analysis/transfer_eval.py --iters N rescales it (warm-up and cosine end included).
_base_ = 'mmdet::_base_/default_runtime.py'
max_iters = 300
val_interval = 100
warmup_iters = 30
base_lr = 2e-3

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=val_interval)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='FrozenSummaryOptimWrapperConstructor',  # one log line for frozen stages
    optimizer=dict(type='AdamW', lr=base_lr, weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0., bypass_duplicate=True),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup_iters, end=max_iters,
         T_max=max_iters - warmup_iters, eta_min=base_lr * 0.01),
]
auto_scale_lr = dict(enable=False, base_batch_size=4)
custom_hooks = [
    # few hundred updates: EMA with a fast warm-up (gamma) so that it tracks them
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=2e-3, gamma=100,
         update_buffers=True, priority=49),
    dict(type='NonFiniteLossHook'),
    # drop-path masks drawn from (seed, iteration): --resume reproduces an uninterrupted run
    dict(type='IterationSeedHook'),
    # warns when data_preprocessor differs from the input the pretrained weights expect
    dict(type='PretrainedInputCheckHook'),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    # best_*.pth by COCO AP (AP50 saturates within a hundred iterations); instance and
    # semantic segmentation configs rank by segm AP / mIoU instead. Crash-safe writes; two
    # kept, so that a bad last one (diverged, wrong data) still leaves one to go back to.
    checkpoint=dict(type='SafeCheckpointHook', by_epoch=False, interval=val_interval,
                    max_keep_ckpts=2, save_best='coco/bbox_mAP', rule='greater'),
    visualization=dict(type='DetVisualizationHook', draw=False))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
