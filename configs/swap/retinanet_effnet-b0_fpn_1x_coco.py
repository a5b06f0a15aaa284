# RetinaNet with an EfficientNet-B0 backbone: mmdet's R-50 config with the backbone swapped.
# ImageNet weights (optional): convert torchvision's efficientnet_b0 state dict with
#   python tools/convert_weights.py efficientnet_b0.pth checkpoints/efficientnet_b0_torchvision.pth
# When the file is absent (paths are relative to the working directory), the backbone keeps
# its default Kaiming init. BN eps 1e-5 matches torchvision's b0-b4 weights.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
import os.path as osp  # after _base_: mmengine reads an import first as a lazy config

custom_imports = dict(imports=['effdet_plugin'], allow_failed_imports=False)

effnet_checkpoint = 'checkpoints/efficientnet_b0_torchvision.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='EffNet',
        arch='b0',
        out_indices=(2, 3, 5, 7),  # strides 4, 8, 16, 32 like ResNet's four stages
        frozen_stages=0,
        norm_cfg=dict(type='BN', requires_grad=True, eps=1e-5, momentum=0.01),
        norm_eval=False,
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=effnet_checkpoint)
        if osp.isfile(effnet_checkpoint) else None),
    neck=dict(in_channels=[24, 40, 112, 320]))
