# Everything an EfficientDet COCO config shares: D0 model, COCO with large-scale jitter,
# the official 300-epoch recipe (its EMA included). A variant config overrides what differs:
# backbone arch, neck in_channels, neck / head arch, the pipelines' input size (and D7x the
# padding); tests/configs checks each against the scaling table (docs/configs.md).
_base_ = [
    './models/efficientdet_d0.py', './datasets/coco_detection_effdet.py',
    './schedules/effdet_300e.py', 'mmdet::_base_/default_runtime.py'
]
default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook', interval=5, max_keep_ckpts=3, save_best='auto'))
custom_hooks = [
    *_base_.custom_hooks,  # the schedule's EMA
    dict(type='NonFiniteLossHook'),
    dict(type='IterationSeedHook'),
]
