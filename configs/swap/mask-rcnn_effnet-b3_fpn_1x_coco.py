# Mask R-CNN with an EfficientNet-B3 backbone: mmdet's R-50 config with the backbone swapped.
# ImageNet weights (optional): convert torchvision's efficientnet_b3 state dict with
#   python tools/convert_weights.py efficientnet_b3.pth checkpoints/efficientnet_b3_torchvision.pth
# Without the file the backbone keeps its default init (see retinanet_effnet-b0_fpn_1x_coco.py).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
import os.path as osp  # after _base_: mmengine reads an import first as a lazy config

custom_imports = dict(imports=['effdet_plugin'], allow_failed_imports=False)

effnet_checkpoint = 'checkpoints/efficientnet_b3_torchvision.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='EffNet',
        arch='b3',
        out_indices=(2, 3, 5, 7),
        frozen_stages=0,
        norm_cfg=dict(type='BN', requires_grad=True, eps=1e-5, momentum=0.01),
        norm_eval=False,
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=effnet_checkpoint)
        if osp.isfile(effnet_checkpoint) else None),
    neck=dict(in_channels=[32, 48, 136, 384]))
