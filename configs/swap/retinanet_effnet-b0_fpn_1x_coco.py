# RetinaNet with an EfficientNet-B0 backbone: mmdet's R-50 config with the backbone swapped.
# ImageNet weights: convert torchvision's efficientnet_b0 state dict with
#   python tools/convert_weights.py efficientnet_b0.pth checkpoints/efficientnet_b0_torchvision.pth
# (paths are relative to the working directory). To train from scratch instead:
#   --cfg-options model.backbone.init_cfg=None
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', './_base_/effnet_fpn_backbone.py']
effnet_checkpoint = 'checkpoints/efficientnet_b0_torchvision.pth'
model = dict(
    backbone=dict(_base_.effnet_backbone, _delete_=True,
                  init_cfg=dict(type='Pretrained', checkpoint=effnet_checkpoint)),
    neck=dict(in_channels=[24, 40, 112, 320]))  # B0 at strides 4-32
