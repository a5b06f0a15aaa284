# FCOS with an EfficientNet-B0 backbone: mmdet's R-50-caffe config with the backbone swapped.
# Weights and init: see retinanet_effnet-b0_fpn_1x_coco.py. The caffe-style BGR normalisation
# of the base config is replaced by the ImageNet RGB one the EfficientNet weights expect.
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'
from effdet_plugin.engine.variant_config import effnet_fpn_backbone  # after _base_: not lazy

custom_imports = dict(imports=['effdet_plugin'], allow_failed_imports=False)
effnet_checkpoint = 'checkpoints/efficientnet_b0_torchvision.pth'
model = dict(
    effnet_fpn_backbone('b0', effnet_checkpoint),
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True))
