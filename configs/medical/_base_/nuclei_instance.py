# Nuclei instances (data/nuclei, made by tools/dataset_converters/nuclei_to_coco.py): 20 training
# tiles of the x < 384 region, one held-out 256x1024 strip. Medical loading (intensity window)
# and albumentations through AlbuCompat; COCO bbox + segm AP on the strip.
# Your own data: see docs/medical.md (override data_root/ann_file/data_prefix/classes).
dataset_type = 'RobustCocoDataset'
data_root = 'data/nuclei/'
classes = ('nucleus', )
crop_size = (256, 256)  # training crop (CPU budget); objects keep their test-time size
# Intensity window to 0-255: 'none' | 'percentile' | 'minmax' | 'dicom' | 'fixed'. The nuclei
# tiles are 8-bit, already normalised by the converter: 'none', as tools/infer.py treats 8-bit
# files. 16-bit / DICOM data: 'percentile' or 'dicom' (tools/infer.py --window, same default).
load_image = dict(type='LoadMedicalImageFromFile', window='none')
albu_transforms = [
    dict(type='RandomRotate90', p=0.5),
    dict(type='HorizontalFlip', p=0.5),
    dict(type='VerticalFlip', p=0.5),
    dict(type='ElasticTransform', alpha=20, sigma=5, p=0.2),
    dict(type='CLAHE', clip_limit=2.0, p=0.2),
    dict(type='RandomBrightnessContrast', brightness_limit=0.2, contrast_limit=0.2, p=0.5),
]
train_pipeline = [
    load_image,
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='AlbuCompat', transforms=albu_transforms,
         bbox_params=dict(type='BboxParams', format='pascal_voc',
                          label_fields=['gt_bboxes_labels', 'gt_ignore_flags'],
                          filter_lost_elements=True)),
    # scale jitter around each image's own size (tools/train.py --img-scale W H: around that
    # size), so objects are as large in training as in the native-size test pipeline
    dict(type='ScaleJitter', ratio_range=(0.8, 1.25)),
    dict(type='RandomCrop', crop_size=crop_size, recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(2, 2), by_mask=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    load_image,
    dict(type='Resize', scale_factor=1.0, keep_ratio=True),  # records scale_factor for rescale
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'annotations/instances_val.json',
                     metric=['bbox', 'segm'])
test_evaluator = val_evaluator
