# EfficientDet-D0: EfficientNet-B0 -> BiFPN (64 ch x 3) -> shared class/box nets (3 layers).
# Neck/head widths, depths, levels and anchors follow `arch` through
# effdet_plugin.models.utils.scaling; override any of them explicitly if needed.
custom_imports = dict(imports=['effdet_plugin'], allow_failed_imports=False)
norm_cfg = dict(type='BN', eps=1e-3, momentum=0.01)

model = dict(
    type='SingleStageDetector',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=128),  # 2^max_level: any input size works
    backbone=dict(
        type='EffNet',
        arch='b0',
        out_indices=(3, 5, 7),
        padding='tf_same',  # TF 'SAME' padding, as the official weights expect
        drop_path_rate=0.2,
        norm_cfg=norm_cfg),
    neck=dict(type='EffBiFPN', in_channels=[40, 112, 320], arch='d0', norm_cfg=norm_cfg),
    bbox_head=dict(type='EffDetHead', num_classes=80, arch='d0', norm_cfg=norm_cfg),
    # The head's train/test settings live here only (EffDetHead has no defaults for them).
    # Official matcher: IoU >= 0.5 positive, < 0.5 negative, every box keeps its best anchor.
    train_cfg=dict(
        assigner=dict(
            type='MaxIoUAssigner',
            pos_iou_thr=0.5,
            neg_iou_thr=0.5,
            min_pos_iou=0.,
            ignore_iof_thr=-1,
            gt_max_assign_all=False),
        sampler=dict(type='PseudoSampler'),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    test_cfg=dict(
        nms_pre=5000,
        nms_pre_scope='image',  # the 5000 best of the image (official); 'level': per level
        min_bbox_size=0,
        score_thr=0.001,
        # Gaussian soft-NMS, as the official COCO evaluation (the paper's sigma 0.5 is mmcv's
        # sigma; TF's API takes sigma / 2; a Gaussian decay ignores iou_threshold); hard NMS:
        # nms=dict(type='nms', iou_threshold=0.5)
        nms=dict(type='soft_nms', iou_threshold=0.5, sigma=0.5, min_score=0.001,
                 method='gaussian'),
        max_per_img=100))
