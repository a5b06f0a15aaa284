# Faster R-CNN with an EfficientNet-B0 backbone: mmdet's R-50 config with the backbone swapped.
# Weights and init: see retinanet_effnet-b0_fpn_1x_coco.py.
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', './_base_/effnet_fpn_backbone.py']
effnet_checkpoint = 'checkpoints/efficientnet_b0_torchvision.pth'
model = dict(
    backbone=dict(_base_.effnet_backbone, _delete_=True,
                  init_cfg=dict(type='Pretrained', checkpoint=effnet_checkpoint)),
    neck=dict(in_channels=[24, 40, 112, 320]))  # P2-P5 for the RPN's stride 4-64 anchors
