# Two-stage instance segmentation on nuclei: mmdet's Mask R-CNN (RPN + StandardRoIHead +
# FCNMaskHead) on EfficientNet-Lite0 (ImageNet) + BiFPN. The BiFPN starts at P2 (stride 4,
# min_level=2) so that RoIAlign of ~20-60 px nuclei samples a 4-px grid, not an 8-px one;
# P2-P6 (strides 4..64) cover the nuclei, P7 would only see background on 256 crops.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py', './_base_/models/effnet_lite0_imagenet.py',
          './_base_/nuclei_instance.py', './_base_/finetune_cpu.py']
custom_imports = dict(
    imports=['effdet_plugin'],
    allow_failed_imports=False)
strides = [4, 8, 16, 32, 64]
width = 64  # BiFPN width of Lite0; RPN, RoI heads and mask head stay at it (CPU budget)
model = dict(
    data_preprocessor=dict(_base_.lite_input, pad_size_divisor=64),
    backbone=dict(
        _base_.lite0_backbone,
        _delete_=True,
        out_indices=(2, 3, 5, 7),  # strides 4, 8, 16, 32: 24, 40, 112, 320 channels
    ),
    neck=dict(_base_.lite0_bifpn, _delete_=True, in_channels=[24, 40, 112, 320], min_level=2,
              max_level=6),
    rpn_head=dict(
        in_channels=width,
        feat_channels=width,
        # anchors 16..256 px: the smallest nuclei (~15 px) still reach IoU 0.7 with one
        anchor_generator=dict(scales=[4], strides=strides)),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width, featmap_strides=strides[:4]),
        bbox_head=dict(in_channels=width, fc_out_channels=256, num_classes=1),
        mask_roi_extractor=dict(out_channels=width, featmap_strides=strides[:4]),
        mask_head=dict(in_channels=width, conv_out_channels=width, num_classes=1)),
    # iscrowd fragments (nuclei cut by tile borders) are ignored, not negatives
    train_cfg=dict(
        rpn=dict(assigner=dict(ignore_iof_thr=0.5)),
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(assigner=dict(ignore_iof_thr=0.5), sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=300)))
base_lr = 1e-3
optim_wrapper = dict(optimizer=dict(lr=base_lr))
default_hooks = dict(checkpoint=dict(save_best='coco/segm_mAP'))
