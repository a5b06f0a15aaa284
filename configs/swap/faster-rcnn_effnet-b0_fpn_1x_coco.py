# Faster R-CNN with an EfficientNet-B0 backbone: mmdet's R-50 config with the backbone swapped.
# Weights and init: see retinanet_effnet-b0_fpn_1x_coco.py.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
import os.path as osp  # after _base_: mmengine reads an import first as a lazy config

custom_imports = dict(imports=['effdet_plugin'], allow_failed_imports=False)

effnet_checkpoint = 'checkpoints/efficientnet_b0_torchvision.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='EffNet',
        arch='b0',
        out_indices=(2, 3, 5, 7),  # P2-P5 for the RPN's stride 4-64 anchors
        frozen_stages=0,
        norm_cfg=dict(type='BN', requires_grad=True, eps=1e-5, momentum=0.01),
        norm_eval=False,
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=effnet_checkpoint)
        if osp.isfile(effnet_checkpoint) else None),
    neck=dict(in_channels=[24, 40, 112, 320]))
