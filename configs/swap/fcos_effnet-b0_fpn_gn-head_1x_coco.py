# FCOS with an EfficientNet-B0 backbone: mmdet's R-50-caffe config with the backbone swapped.
# Weights and init: see retinanet_effnet-b0_fpn_1x_coco.py. The caffe-style BGR normalisation
# of the base config is replaced by the ImageNet RGB one the EfficientNet weights expect.
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'
import os.path as osp  # after _base_: mmengine reads an import first as a lazy config

custom_imports = dict(imports=['effdet_plugin'], allow_failed_imports=False)

effnet_checkpoint = 'checkpoints/efficientnet_b0_torchvision.pth'
model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='EffNet',
        arch='b0',
        out_indices=(2, 3, 5, 7),
        frozen_stages=0,
        norm_cfg=dict(type='BN', requires_grad=True, eps=1e-5, momentum=0.01),
        norm_eval=False,
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=effnet_checkpoint)
        if osp.isfile(effnet_checkpoint) else None),
    neck=dict(in_channels=[24, 40, 112, 320]))
