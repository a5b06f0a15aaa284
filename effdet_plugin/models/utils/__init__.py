from .candidates import topk_candidates
from .scaling import (
                      EFFICIENTDET_SCALES,
                      EFFICIENTNET_SCALES,
                      DetScale,
                      NetScale,
                      compound_scale,
                      get_det_scale,
                      get_net_scale,
                      make_divisible,
                      round_filters,
                      round_repeats,
)

__all__ = [
    'EFFICIENTDET_SCALES', 'EFFICIENTNET_SCALES', 'DetScale', 'NetScale', 'compound_scale',
    'get_det_scale', 'get_net_scale', 'make_divisible', 'round_filters', 'round_repeats', 'topk_candidates'
]
