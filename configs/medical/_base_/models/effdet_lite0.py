# EfficientDet-Lite0 (EfficientNet-Lite0 -> BiFPN P3-P7, 64 ch x 3) from the ImageNet Lite0
# weights, for fine-tuning on small medical data sets. Made by
#   python tools/convert_weights.py --lite0-package checkpoints/effnet_lite0_imagenet.pth
_base_ = '../../../_base_/models/efficientdet_d0.py'
custom_imports = dict(
    imports=['effdet_plugin'],
    allow_failed_imports=False)
imagenet_checkpoint = 'checkpoints/effnet_lite0_imagenet.pth'
# BN momentum 0.1 (PyTorch's default), not EfficientDet's 0.01 (TF 0.99): in a few hundred
# iterations 0.01 leaves the running statistics of the new neck / head layers close to their
# init (after 100 iterations 37% of it remains) and the model predicts nothing in eval mode.
norm_cfg = dict(type='BN', eps=1e-3, momentum=0.1)
model = dict(
    backbone=dict(
        arch='lite0',
        norm_cfg=norm_cfg,
        drop_path_rate=0.1,
        frozen_stages=1,  # stem + first stage keep their ImageNet filters (and CPU time)
        init_cfg=dict(type='Pretrained', checkpoint=imagenet_checkpoint)),
    neck=dict(in_channels=[40, 112, 320], arch='lite0', norm_cfg=norm_cfg,
              act_cfg=dict(type='ReLU6')),
    bbox_head=dict(num_classes=1, arch='lite0', norm_cfg=norm_cfg, act_cfg=dict(type='ReLU6')),
    test_cfg=dict(score_thr=0.05))
