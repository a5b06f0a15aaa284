from .candidates import topk_candidates
from .norm import (
    NormEvalMixin,
    build_norm,
    group_count,
    load_bn_into_statfree_norms,
    norm_cfg_for,
    set_norm_eval,
)
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
    'get_det_scale', 'get_net_scale', 'make_divisible', 'round_filters', 'round_repeats', 'topk_candidates',
    'NormEvalMixin', 'build_norm', 'group_count', 'load_bn_into_statfree_norms', 'norm_cfg_for', 'set_norm_eval'
]
