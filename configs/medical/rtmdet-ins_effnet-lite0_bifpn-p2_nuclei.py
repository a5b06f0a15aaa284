# One-stage instance segmentation on nuclei: mmdet's RTMDetInsSepBNHead (dynamic-conv masks,
# dynamic soft label assignment) on EfficientNet-Lite0 (ImageNet) + BiFPN P2-P4 (strides 4, 8,
# 16). Mask prototypes come from the finest level, so masks are predicted at stride 4.
_base_ = ['./_base_/models/effnet_lite0_imagenet.py', './_base_/nuclei_instance.py',
          './_base_/finetune_cpu.py']
custom_imports = dict(
    imports=['effdet_plugin'],
    allow_failed_imports=False)
norm_cfg = _base_.lite0_norm_cfg
strides = [4, 8, 16]
width = 64
model = dict(
    type='SingleStageDetector',
    data_preprocessor=dict(
        _base_.lite_input,
        type='DetDataPreprocessor',
        pad_size_divisor=32,
        pad_mask=True),  # masks padded with the batch (crops may be smaller than 256)
    backbone=dict(
        _base_.lite0_backbone,
        out_indices=(2, 3, 5),  # strides 4, 8, 16; stages 6-7 are not built
    ),
    neck=dict(_base_.lite0_bifpn, in_channels=[24, 40, 112], min_level=2, max_level=4),
    bbox_head=dict(
        type='RTMDetInsSepBNHead',
        num_classes=1,
        in_channels=width,
        feat_channels=width,
        stacked_convs=2,
        share_conv=True,
        pred_kernel_size=1,
        norm_cfg=norm_cfg,
        act_cfg=dict(type='SiLU'),
        anchor_generator=dict(type='MlvlPointGenerator', offset=0, strides=strides),
        bbox_coder=dict(type='DistancePointBBoxCoder'),
        loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        loss_mask=dict(type='DiceLoss', loss_weight=2.0, eps=5e-6, reduction='mean')),
    train_cfg=dict(
        assigner=dict(type='DynamicSoftLabelAssigner', topk=13),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=100,
        mask_thr_binary=0.5))
default_hooks = dict(checkpoint=dict(save_best='coco/segm_mAP'))
