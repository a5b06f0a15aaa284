"""A user's config scaled to one point of a scaling study, and the input it is measured at.

A :class:`ScalePoint` describes one model *relative to the config's own model*: multipliers of
the backbone's depth and width, of the input resolution, and (for EfficientDet necks/heads) a
step of EfficientDet's phi rules. :func:`scale_config` turns the config into that model:

- the ``EffNet`` backbone becomes ``arch=1.0`` with ``scaling=dict(alpha=d, beta=w, ...)``
  where ``d``/``w`` are the base variant's depth/width multipliers times the point's, so the
  base variant's rounding rules (and Lite's fixed stem/head) are kept; phi 0 is the config's
  own backbone;
- the neck's ``in_channels`` follow the scaled backbone's ``out_channels``;
- ``EffBiFPN`` width/depth and ``EffDetHead`` depth follow EfficientDet's phi rule at
  ``base phi + point.det_phi`` (other necks and heads keep their size: backbone-swap configs);
- every pipeline's resize and crop sizes are multiplied by the resolution multiplier.

Every scaled model trains from its random init: a scaled backbone has other shapes than any
pretrained checkpoint, and a fair comparison starts all points alike (phi 0 included).

All multipliers come from :mod:`effdet_plugin.models.utils.scaling`.
"""
import copy
from typing import Dict, Optional, Sequence, Tuple

from mmengine.config import Config

from ...datasets.checks import SPLITS, split_datasets
from ...models.utils.scaling import (
    det_phi,
    efficientdet_scale,
    get_net_scale,
    make_divisible,
)
from .points import ScalePoint

# Pipeline steps whose sizes scale with the input resolution: type -> keys holding sizes.
_SIZE_KEYS = dict(Resize=('scale', 'scale_factor'), RandomResize=('scale', ),
                  ScaleJitter=('scale', 'ratio_range'), RandomCrop=('crop_size', ))



def pipelines(cfg: Config) -> Dict[str, list]:
    """``{split: pipeline}`` of the train/val/test datasets (``train1``... for more than one)."""
    found = {}
    for split in SPLITS:
        for i, (_, dataset) in enumerate(split_datasets(cfg, split)):
            if isinstance(dataset.get('pipeline'), list):
                found[f'{split}{i or ""}'] = dataset['pipeline']
    return found


def _hw(size: Sequence[int], wh: bool) -> Tuple[int, int]:
    size = (size, size) if isinstance(size, int) else tuple(size)
    return (int(size[1]), int(size[0])) if wh else (int(size[0]), int(size[1]))


def reference_shape(cfg: Config) -> Tuple[int, int]:
    """The (H, W) input that FLOPs and latency are measured at for the config's model: the
    training crop, else the test resize ``scale``, else the EfficientDet variant's size."""
    found = pipelines(cfg)
    for step in found.get('train', []):
        if step.get('type') == 'RandomCrop' and step.get('crop_type', 'absolute') == 'absolute':
            return _hw(step['crop_size'], wh=False)  # mmdet's crop_size is (h, w)
    for step in found.get('test', found.get('val', [])):
        if step.get('type') == 'Resize' and step.get('scale') is not None:
            return _hw(step['scale'], wh=True)  # mmdet's scale is (w, h)
    head_arch = (cfg.model.get('bbox_head') or {}).get('arch')
    if head_arch is not None:
        size = efficientdet_scale(det_phi(head_arch)).input_size
        return size, size
    raise ValueError('cannot tell the input size of this config (no absolute RandomCrop in the '
                     'training pipeline, no Resize scale in the test pipeline); pass --shape H W')


def scaled_shape(shape: Sequence[int], resolution: float) -> Tuple[int, int]:
    """``shape`` times the resolution multiplier, each side rounded to a multiple of 8."""
    return tuple(make_divisible(s * resolution, 8) for s in shape)  # type: ignore[return-value]


def scale_pipelines(cfg: Config, resolution: float) -> None:
    """Multiply every resize / crop size of every pipeline by ``resolution`` (in place)."""
    if abs(resolution - 1) < 1e-12:
        return
    for split, pipeline in pipelines(cfg).items():
        scaled = False
        for step in pipeline:
            keys = _SIZE_KEYS.get(step.get('type'), ())
            if step.get('type') == 'RandomCrop' and step.get('crop_type',
                                                              'absolute') != 'absolute':
                keys = ()  # relative crops follow the image size by themselves
            for key in keys:
                value = step.get(key)
                if value is None or (key == 'ratio_range' and step.get('scale') is not None):
                    continue  # ScaleJitter around a scale: the scale carries the resolution
                step[key] = _times(value, resolution, rounded=key in ('scale', 'crop_size'))
                scaled = True
                break
        if not scaled:
            raise ValueError(
                f'cannot scale the input resolution of the {split} pipeline: it has no '
                f'{"/".join(_SIZE_KEYS)} step with a size; add one (e.g. '
                "dict(type='Resize', scale_factor=1.0, keep_ratio=True)).")


def _times(value, factor: float, rounded: bool):
    if isinstance(value, (list, tuple)):
        return type(value)(_times(v, factor, rounded) for v in value)
    return make_divisible(value * factor, 8) if rounded else value * factor


def base_backbone(cfg: Config):
    """The config backbone's :class:`NetScale` (raises unless it is an ``EffNet``)."""
    backbone = cfg.model.get('backbone') or {}
    if backbone.get('type') != 'EffNet':
        raise ValueError(f'the scaling lab scales EffNet backbones; this config has '
                         f'{backbone.get("type")!r}. Swap in an EffNet (see configs/swap/).')
    return get_net_scale(backbone.get('arch', 'b0'), **(backbone.get('scaling') or {}))


def base_det_phi(cfg: Config) -> Optional[float]:
    """EfficientDet phi of the config's ``EffBiFPN`` neck (None for other necks)."""
    neck = cfg.model.get('neck') or {}
    return det_phi(neck.get('arch', 'd0')) if neck.get('type') == 'EffBiFPN' else None


def scale_config(cfg: Config, point: ScalePoint) -> Config:
    """A copy of ``cfg`` whose model and pipelines are scaled to ``point``, from random init."""
    import torch
    from mmdet.registry import MODELS

    cfg = copy.deepcopy(cfg)
    model = cfg.model
    base = base_backbone(cfg)
    backbone = model.backbone
    backbone.update(arch=1.0, scaling=dict(alpha=base.depth * point.depth,
                                           beta=base.width * point.width,
                                           gamma=point.resolution, lite=base.lite))
    backbone.pop('init_cfg', None)
    if 'frozen_stages' in backbone:
        backbone.frozen_stages = -1  # frozen random filters would only hurt
    cfg.load_from, cfg.resume = None, False
    with torch.device('meta'):  # shapes only: instant
        out_channels = list(MODELS.build(copy.deepcopy(backbone)).out_channels)
    neck, head = model.get('neck'), model.get('bbox_head')
    if isinstance(neck, dict) and 'in_channels' in neck:
        neck.in_channels = out_channels
    if point.det_phi is not None and neck is not None and neck.get('type') == 'EffBiFPN':
        det = efficientdet_scale(det_phi(neck.get('arch', 'd0')) + point.det_phi)
        neck.update(out_channels=det.fpn_channels, num_repeats=det.fpn_repeats)
        if isinstance(head, dict) and head.get('type') == 'EffDetHead':
            head.update(in_channels=det.fpn_channels, stacked_convs=det.head_repeats)
    scale_pipelines(cfg, point.resolution)
    return cfg


def deepest_stride(model) -> int:
    """The largest stride of a built detector's outputs (head priors, neck or backbone)."""
    for head_name in ('bbox_head', 'rpn_head'):
        generator = getattr(getattr(model, head_name, None), 'prior_generator', None)
        if generator is not None:
            return int(max(max(s) if isinstance(s, (tuple, list)) else s
                           for s in generator.strides))
    for part in (getattr(model, 'neck', None), model.backbone):
        if getattr(part, 'strides', None):
            return int(max(part.strides))
    raise ValueError('cannot tell the deepest stride of this model')


def check_input_size(point: ScalePoint, shape: Sequence[int], stride: int) -> None:
    """Refuse a point whose input is smaller than the model's deepest stride."""
    if min(shape) < stride:
        raise ValueError(
            f'{point.name}: input {shape[0]}x{shape[1]} (the reference input times '
            f'{point.resolution:.3f}) is smaller than the deepest stride {stride} of the model; '
            'drop that phi or measure at a larger --shape H W.')


def build_model(cfg: Config):
    """``cfg.model`` built on the CPU, in eval mode (random init)."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return MODELS.build(copy.deepcopy(cfg.model)).eval()
