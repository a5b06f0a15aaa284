# The official EfficientDet recipe: SGD momentum 0.9, weight decay 4e-5 (none on norm and bias),
# 1-epoch linear warmup then cosine decay, 300 epochs, EMA 0.9998, gradient clipping at 10.
# lr 0.16 is the official value for a global batch of 128 (8 GPUs x 16 images, the default
# here); with another total batch tools/train.py rescales it linearly (--no-auto-scale-lr: not).
max_epochs = 300
base_lr = 0.16

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=base_lr, momentum=0.9, weight_decay=4e-5),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0., bypass_duplicate=True),
    clip_grad=dict(max_norm=10, norm_type=2))

param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=True, begin=1, end=max_epochs,
         T_max=max_epochs - 1, convert_to_iter_based=True),
]

# mmdet's EMA: ema = (1 - momentum) * ema + momentum * param, so decay 0.9998 -> 2e-4.
# mmengine's EMAHook evaluates with, and checkpoints, the EMA weights.
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=2e-4, update_buffers=True,
         priority=49),
]

auto_scale_lr = dict(enable=False, base_batch_size=128)
# Converted to SyncBN by the Runner only when training is distributed.
sync_bn = 'torch'
