# Mask R-CNN with an EfficientNet-B3 backbone: mmdet's R-50 config with the backbone swapped.
# ImageNet weights: convert torchvision's efficientnet_b3 state dict with
#   python tools/convert_weights.py efficientnet_b3.pth checkpoints/efficientnet_b3_torchvision.pth
# Init: see retinanet_effnet-b0_fpn_1x_coco.py.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', './_base_/effnet_fpn_backbone.py']
effnet_checkpoint = 'checkpoints/efficientnet_b3_torchvision.pth'
model = dict(
    backbone=dict(_base_.effnet_backbone, _delete_=True, arch='b3', drop_path_rate=0.3,
                  init_cfg=dict(type='Pretrained', checkpoint=effnet_checkpoint)),
    neck=dict(in_channels=[32, 48, 136, 384]))  # B3 at strides 4-32
