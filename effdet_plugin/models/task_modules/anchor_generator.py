"""EfficientDet anchors: mmdet's grid logic with the official (width, height) aspect pairs."""
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmdet.models.task_modules.prior_generators import AnchorGenerator
from mmdet.registry import TASK_UTILS
from torch import Tensor

# Official EfficientDet aspects as (width, height) multipliers. They are not the
# sqrt(2)-based pairs that mmdet's ratios (0.5, 1, 2) give: 1.4 vs 1.414 is a 1% change.
EFFDET_ASPECT_RATIOS = ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4))
# Anchor sets kept: a few input sizes (an evaluation of mixed sizes, multi-scale training)
# reuse theirs without holding one set per size ever seen.
CACHED_PRIOR_SETS = 8


@TASK_UTILS.register_module()
class EffDetAnchorGenerator(AnchorGenerator):
    """Anchor generator producing exactly the anchors of the official EfficientDet.

    Compared with ``AnchorGenerator(octave_base_scale=4, scales_per_octave=3,
    ratios=[0.5, 1.0, 2.0], center_offset=0.5)``, the differences are:

    - aspects are given as ``(width, height)`` multipliers, as in the official model
      (``(1.4, 0.7)`` rather than ``(sqrt(2), 1 / sqrt(2))``);
    - anchors at one location are ordered octave scale first, then aspect, which is the
      official channel layout of the class and box outputs (converted weights need it);
    - :meth:`grid_priors` keeps the anchors of the last few feature sizes instead of
      building them for every image.

    Args:
        strides (Sequence[int | tuple[int, int]]): Strides of the levels.
        aspect_ratios (Sequence[tuple[float, float]]): ``(width, height)`` multipliers.
            Defaults to ``((1.0, 1.0), (1.4, 0.7), (0.7, 1.4))``.
        octave_base_scale (float): Anchor size in strides (the "anchor scale").
            Defaults to 4.0.
        scales_per_octave (int): Octave scales ``2 ** (i / n)``. Defaults to 3.
        center_offset (float): Anchor centre in strides; 0.5 puts it at the cell centre as
            the official model does. Defaults to 0.5.
        **kwargs: Other :class:`AnchorGenerator` arguments (``base_sizes``, ``use_box_type``).
    """

    def __init__(self,
                 strides: Sequence[Union[int, Tuple[int, int]]],
                 aspect_ratios: Sequence[Tuple[float, float]] = EFFDET_ASPECT_RATIOS,
                 octave_base_scale: float = 4.0,
                 scales_per_octave: int = 3,
                 center_offset: float = 0.5,
                 **kwargs) -> None:
        self.aspect_ratios = [tuple(float(v) for v in pair) for pair in aspect_ratios]
        if any(len(pair) != 2 for pair in self.aspect_ratios):
            raise ValueError(f'aspect_ratios must be (width, height) pairs, got {aspect_ratios}')
        super().__init__(
            strides=list(strides),
            ratios=[h / w for w, h in self.aspect_ratios],  # mmdet's h/w, informative only
            octave_base_scale=octave_base_scale,
            scales_per_octave=scales_per_octave,
            scale_major=False,
            center_offset=center_offset,
            **kwargs)
        self._prior_cache = OrderedDict()

    def gen_single_level_base_anchors(self,
                                      base_size: Union[int, float],
                                      scales: Tensor,
                                      ratios: Tensor,
                                      center: Optional[Tuple[float]] = None) -> Tensor:
        """Base anchors of one level, ordered (octave scale, aspect)."""
        if center is None:
            x_center = y_center = self.center_offset * base_size
        else:
            x_center, y_center = center
        aspects = torch.tensor(self.aspect_ratios, dtype=scales.dtype)
        ws = (base_size * scales[:, None] * aspects[None, :, 0]).reshape(-1)
        hs = (base_size * scales[:, None] * aspects[None, :, 1]).reshape(-1)
        return torch.stack(
            [x_center - 0.5 * ws, y_center - 0.5 * hs, x_center + 0.5 * ws, y_center + 0.5 * hs],
            dim=-1)

    def grid_priors(self,
                    featmap_sizes: Sequence[Tuple[int, int]],
                    dtype: torch.dtype = torch.float32,
                    device: Union[str, torch.device] = 'cuda') -> List[Tensor]:
        """Anchors of every level (mmdet's), the same tensors for the same
        ``(featmap_sizes, dtype, device)`` while among the last :data:`CACHED_PRIOR_SETS`.

        Tensors made in inference mode cannot enter autograd, so they are kept apart from
        the others. A trace (ONNX export) or ``torch.compile`` builds them afresh, so that
        they follow the input size there.
        """
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return super().grid_priors(featmap_sizes, dtype=dtype, device=device)
        key = (tuple(tuple(int(v) for v in size) for size in featmap_sizes), dtype,
               torch.device(device), torch.is_inference_mode_enabled())
        if key in self._prior_cache:
            self._prior_cache.move_to_end(key)
        else:
            self._prior_cache[key] = super().grid_priors(featmap_sizes, dtype=dtype,
                                                         device=device)
            if len(self._prior_cache) > CACHED_PRIOR_SETS:
                self._prior_cache.popitem(last=False)
        return list(self._prior_cache[key])

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(strides={self.strides}, '
                f'aspect_ratios={self.aspect_ratios}, octave_base_scale='
                f'{self.octave_base_scale}, scales_per_octave={self.scales_per_octave}, '
                f'center_offset={self.center_offset})')
