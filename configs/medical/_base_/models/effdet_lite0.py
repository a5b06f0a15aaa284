# EfficientDet-Lite0 (EfficientNet-Lite0 -> BiFPN P3-P7, 64 ch x 3) from the ImageNet Lite0
# weights, for fine-tuning on small medical data sets. Made by
#   python tools/convert_weights.py --lite0-package checkpoints/effnet_lite0_imagenet.pth
_base_ = ['../../../_base_/models/efficientdet_d0.py', './effnet_lite0_imagenet.py']
custom_imports = dict(
    imports=['effdet_plugin'],
    allow_failed_imports=False)
norm_cfg = _base_.lite0_norm_cfg
model = dict(
    data_preprocessor=_base_.lite_input,
    backbone=_base_.lite0_backbone,
    neck=dict(_base_.lite0_bifpn, in_channels=[40, 112, 320]),
    bbox_head=dict(num_classes=1, arch='lite0', norm_cfg=norm_cfg, act_cfg=dict(type='ReLU6')),
    test_cfg=dict(score_thr=0.05))
