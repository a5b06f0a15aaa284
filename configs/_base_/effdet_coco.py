# Everything an EfficientDet COCO config shares: D0 model, COCO with large-scale jitter,
# the official 300-epoch recipe. Variant configs override arch, widths and image size.
_base_ = [
    './models/efficientdet_d0.py', './datasets/coco_detection_effdet.py',
    './schedules/effdet_300e.py', 'mmdet::_base_/default_runtime.py'
]
default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook', interval=5, max_keep_ckpts=3, save_best='auto'))
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=2e-4, update_buffers=True,
         priority=49),
    dict(type='NonFiniteLossHook'),
    dict(type='IterationSeedHook'),
]
