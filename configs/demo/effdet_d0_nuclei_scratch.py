# EfficientDet-D0-style on the demo's nuclei data: EfficientNet-B0 (SE gates, SiLU) from random
# init, BatchNorm in backbone, BiFPN and heads, the demo's schedule and CPU-sized 256 crops.
# The model of the SE-gate study (tools/analysis/se_gates.py): Lite backbones have no SE.
_base_ = './effdet_lite0_nuclei.py'
norm_cfg = dict(type='BN', eps=1e-3, momentum=0.1)
act_cfg = dict(type='SiLU')
model = dict(
    # no pretrained weights: plain ImageNet-style normalisation
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
    backbone=dict(_delete_=True, type='EffNet', arch='b0', out_indices=(3, 5, 7),
                  drop_path_rate=0.1, norm_cfg=norm_cfg),
    neck=dict(arch='d0', in_channels=[40, 112, 320], act_cfg=act_cfg),
    bbox_head=dict(arch='d0', act_cfg=act_cfg))
