# FCOS with an EfficientNet-B0 backbone: mmdet's R-50-caffe config with the backbone swapped.
# Weights and init: see retinanet_effnet-b0_fpn_1x_coco.py. The caffe-style BGR normalisation
# of the base config is replaced by the ImageNet RGB one the EfficientNet weights expect.
_base_ = ['mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', './_base_/effnet_fpn_backbone.py']
effnet_checkpoint = 'checkpoints/efficientnet_b0_torchvision.pth'
model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(_base_.effnet_backbone, _delete_=True,
                  init_cfg=dict(type='Pretrained', checkpoint=effnet_checkpoint)),
    neck=dict(in_channels=[24, 40, 112, 320]))  # B0 at strides 4-32
