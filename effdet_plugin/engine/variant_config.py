"""Config entries derived from a variant name: EfficientDet variants, EffNet in mmdet configs.

A variant config (``configs/effdet_b3_coco.py``) names its variant; everything that follows
from it is derived here, so that no config retypes a width, an input size or a pipeline::

    _base_ = './_base_/effdet_coco.py'
    from effdet_plugin.engine.variant_config import effdet_variant  # noqa: E402

    globals().update(effdet_variant('d3', _base_))

The import has to come after ``_base_``: mmengine reads a config whose first statement is an
import as a lazy (new-style) config. :func:`effnet_fpn_backbone` does the same for the mmdet
configs of ``configs/swap/`` whose ResNet gives way to an EfficientNet.
"""
import copy
import os.path as osp
from typing import Dict, Optional, Tuple, Union

import torch
from mmdet.registry import MODELS

from ..models.utils.scaling import get_det_scale

#: Pipeline steps whose size is the variant's input size, and the key that holds it.
SIZED_STEPS = {'RandomResize': 'scale', 'Resize': 'scale', 'RandomCrop': 'crop_size'}


def sized_pipeline(pipeline: list, image_size: int, name: str) -> list:
    """A copy of ``pipeline`` whose resize / crop steps (:data:`SIZED_STEPS`) are square
    ``image_size`` ones, found by type, not by position."""
    pipeline = copy.deepcopy(list(pipeline))
    steps = [step for step in pipeline if step.get('type') in SIZED_STEPS]
    if not steps:
        raise ValueError(f'{name} has no {"/".join(SIZED_STEPS)} step to set the input size '
                         f'{image_size} on: add one to the base config, or write the pipeline '
                         'in the variant config.')
    for step in steps:
        step[SIZED_STEPS[step['type']]] = (image_size, image_size)
    return pipeline


def backbone_out_channels(backbone: dict) -> list:
    """What a backbone config outputs, asked of the backbone itself (built on the meta
    device: shapes only, no memory, no weights loaded)."""
    backbone = copy.deepcopy(dict(backbone))
    backbone.pop('init_cfg', None)
    with torch.device('meta'):
        return list(MODELS.build(backbone).out_channels)


def effdet_variant(arch: Union[str, float],
                   base: dict,
                   max_epochs: Optional[int] = None) -> Dict[str, object]:
    """Config entries that turn the EfficientDet ``base`` config into variant ``arch``.

    From :func:`~effdet_plugin.models.utils.scaling.get_det_scale`: the backbone arch, the
    neck's ``in_channels`` (what that backbone outputs at the base's ``out_indices``), the
    neck / head ``arch`` (widths, depths, levels, anchors, fusion), the input size of the
    train / test pipelines and the padding ``2 ** max_level``.

    Args:
        arch (str | float): EfficientDet variant (``'d3'``, ``'d7x'``, ``'lite2'``) or phi.
        base (dict): The base config (a variant config's ``_base_``); not changed.
        max_epochs (int, optional): Train this many epochs, the cosine schedule stretched to
            them (the official D7 / D7x recipe: 600). Defaults to None (the base's).

    Returns:
        dict: ``image_size``, ``model``, ``train_pipeline``, ``test_pipeline`` and the three
        dataloaders (their pipelines), plus ``max_epochs``, ``train_cfg`` and
        ``param_scheduler`` when ``max_epochs`` is given.
    """
    scale = get_det_scale(arch)
    image_size = scale.input_size
    backbone = dict(base['model']['backbone'], arch=scale.backbone)
    train_pipeline = sized_pipeline(base['train_pipeline'], image_size, 'train_pipeline')
    test_pipeline = sized_pipeline(base['test_pipeline'], image_size, 'test_pipeline')
    entries = dict(
        image_size=image_size,
        model=dict(
            data_preprocessor=dict(pad_size_divisor=2**scale.max_level),
            backbone=dict(arch=scale.backbone),
            neck=dict(in_channels=backbone_out_channels(backbone), arch=arch),
            bbox_head=dict(arch=arch)),
        train_pipeline=train_pipeline,
        test_pipeline=test_pipeline,
        train_dataloader=dict(dataset=dict(pipeline=train_pipeline)),
        val_dataloader=dict(dataset=dict(pipeline=test_pipeline)),
        test_dataloader=dict(dataset=dict(pipeline=test_pipeline)))
    if max_epochs is not None:
        entries.update(stretched_schedule(base, max_epochs))
    return entries


def stretched_schedule(base: dict, max_epochs: int) -> Dict[str, object]:
    """``max_epochs``, ``train_cfg`` and ``param_scheduler`` of ``base`` with every scheduler
    that ran to the base's last epoch running to ``max_epochs`` instead (``T_max`` too)."""
    old = base['train_cfg']['max_epochs']
    schedulers = copy.deepcopy(list(base['param_scheduler']))
    for sched in schedulers:
        if sched.get('end') == old:
            sched['end'] = max_epochs
            if 'T_max' in sched:
                sched['T_max'] = max_epochs - sched.get('begin', 0)
    return dict(max_epochs=max_epochs, train_cfg=dict(max_epochs=max_epochs),
                param_scheduler=schedulers)


def effnet_fpn_backbone(arch: str,
                        checkpoint: str,
                        drop_path_rate: float = 0.2,
                        out_indices: Tuple[int, ...] = (2, 3, 5, 7)) -> dict:
    """``model`` entries that put an ImageNet EfficientNet in place of an mmdet FPN config's
    ResNet: the backbone (trainable from the stem, torchvision's BN eps 1e-5) and the FPN's
    ``in_channels``, what the backbone outputs.

    Args:
        arch (str): EfficientNet variant (``'b0'`` ... ``'b7'``).
        checkpoint (str): Converted torchvision weights (``tools/convert_weights.py``); when
            the file is absent (relative to the working directory) the backbone keeps its
            default init.
        drop_path_rate (float): Stochastic depth of the last block. Defaults to 0.2.
        out_indices (tuple[int]): Backbone layers fed to the FPN. Defaults to strides 4, 8,
            16, 32, like ResNet's four stages.
    """
    backbone = dict(
        type='EffNet',
        arch=arch,
        out_indices=out_indices,
        frozen_stages=0,
        norm_cfg=dict(type='BN', requires_grad=True, eps=1e-5, momentum=0.01),
        norm_eval=False,
        drop_path_rate=drop_path_rate,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)
        if osp.isfile(checkpoint) else None)
    return dict(backbone=dict(_delete_=True, **backbone),
                neck=dict(in_channels=backbone_out_channels(backbone)))
