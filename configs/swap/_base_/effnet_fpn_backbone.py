# An ImageNet EfficientNet in place of the ResNet of an mmdet FPN config: outputs at strides 4,
# 8, 16, 32 like ResNet's four stages, trainable from the stem, BN eps 1e-5 as torchvision's
# b0-b4 weights. A config takes it as `_base_.effnet_backbone` (with `_delete_=True`, so no
# ResNet key survives), sets its arch and weights, and writes what it outputs as the FPN's
# in_channels (tests/configs checks them against the backbone).
custom_imports = dict(imports=['effdet_plugin'], allow_failed_imports=False)
effnet_backbone = dict(
    type='EffNet',
    arch='b0',
    out_indices=(2, 3, 5, 7),
    frozen_stages=0,
    norm_cfg=dict(type='BN', requires_grad=True, eps=1e-5, momentum=0.01),
    norm_eval=False,
    drop_path_rate=0.2)
