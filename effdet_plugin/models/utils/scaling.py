"""Compound scaling: the single place that knows EfficientNet/EfficientDet multipliers.

Everything that scales (backbone widths and depths, BiFPN width and depth, head depth, input
resolution) asks this module; no other file retypes a multiplier.
"""
import math
import re
from dataclasses import dataclass
from typing import Dict, List, Tuple, Union

# Paper's compound-scaling bases: depth alpha^phi, width beta^phi, resolution gamma^phi.
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15
BASE_RESOLUTION = 224
# EfficientDet input size: 512 + 128 * phi (paper, equation 3).
DET_BASE_INPUT, DET_INPUT_STEP = 512, 128


@dataclass(frozen=True)
class NetScale:
    """Multipliers and defaults of one EfficientNet variant."""
    width: float
    depth: float
    resolution: int
    dropout: float
    lite: bool = False  # ReLU6, no SE, stem/head and first/last stage depth fixed


# The released variants use rounded coefficients, not the formula (EfficientNet paper,
# official model zoo; b8 and l2 from the Noisy-Student / AdvProp releases).
EFFICIENTNET_SCALES: Dict[str, NetScale] = {
    'b0': NetScale(1.0, 1.0, 224, 0.2),
    'b1': NetScale(1.0, 1.1, 240, 0.2),
    'b2': NetScale(1.1, 1.2, 260, 0.3),
    'b3': NetScale(1.2, 1.4, 300, 0.3),
    'b4': NetScale(1.4, 1.8, 380, 0.4),
    'b5': NetScale(1.6, 2.2, 456, 0.4),
    'b6': NetScale(1.8, 2.6, 528, 0.5),
    'b7': NetScale(2.0, 3.1, 600, 0.5),
    'b8': NetScale(2.2, 3.6, 672, 0.5),
    'l2': NetScale(4.3, 5.3, 800, 0.5),
    'lite0': NetScale(1.0, 1.0, 224, 0.2, lite=True),
    'lite1': NetScale(1.0, 1.1, 240, 0.2, lite=True),
    'lite2': NetScale(1.1, 1.2, 260, 0.3, lite=True),
    'lite3': NetScale(1.2, 1.4, 280, 0.3, lite=True),
    'lite4': NetScale(1.4, 1.8, 300, 0.3, lite=True),
}


def make_divisible(value: float, divisor: int = 8, min_ratio: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below ``min_ratio * value``."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < min_ratio * value:
        new_value += divisor
    return new_value


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width`` and round it to a multiple of ``divisor``."""
    return make_divisible(channels * width, divisor)


def round_repeats(repeats: int, depth: float) -> int:
    """Scale a block count by ``depth``, rounding up (as the released models do)."""
    return int(math.ceil(repeats * depth))


def compound_scale(phi: float,
                   alpha: float = ALPHA,
                   beta: float = BETA,
                   gamma: float = GAMMA,
                   lite: bool = False) -> NetScale:
    """EfficientNet multipliers for any compound coefficient ``phi`` from the paper's rule.

    Resolution is ``224 * gamma^phi`` rounded to a multiple of 8; dropout grows from 0.2 by
    0.05 per unit of phi, capped at 0.5, which reproduces the released schedule. ``lite``
    scales the Lite family instead (ReLU6, no SE, fixed stem/head and first/last stage depth).
    """
    if phi < 0:
        raise ValueError(f'compound coefficient phi must be >= 0, got {phi}')
    resolution = make_divisible(BASE_RESOLUTION * gamma**phi, 8)
    dropout = min(0.5, 0.2 + 0.05 * phi)
    return NetScale(width=beta**phi, depth=alpha**phi, resolution=resolution, dropout=dropout,
                    lite=lite)


def get_net_scale(arch: Union[str, float, int],
                  alpha: float = ALPHA,
                  beta: float = BETA,
                  gamma: float = GAMMA,
                  lite: bool = False) -> NetScale:
    """Look up a released variant by name (``'b3'``, ``'lite0'``) or apply the formula to phi
    (``lite`` selects the Lite family for a number; a name says it itself)."""
    if isinstance(arch, (int, float)) and not isinstance(arch, bool):
        return compound_scale(float(arch), alpha, beta, gamma, lite)
    if isinstance(arch, str):
        key = arch.lower().replace('efficientnet_', '').replace('efficientnet-', '')
        if key in EFFICIENTNET_SCALES:
            return EFFICIENTNET_SCALES[key]
    valid = ', '.join(EFFICIENTNET_SCALES)
    raise KeyError(f'Unknown EfficientNet arch {arch!r}. Valid names: {valid}. For any other '
                   f'compound coefficient pass a number, e.g. arch=2.5 (phi, scaled by '
                   f'd=1.2^phi, w=1.1^phi, r=1.15^phi).')


@dataclass(frozen=True)
class DetScale:
    """Scaling of one EfficientDet variant (paper Table 1 and the official model zoo)."""
    backbone: str
    input_size: int
    fpn_channels: int
    fpn_repeats: int
    head_repeats: int
    anchor_scale: float = 4.0
    fusion: str = 'fast'  # 'fast' (fast normalized), 'softmax' or 'sum'
    min_level: int = 3
    max_level: int = 7

    @property
    def strides(self) -> List[int]:
        """Strides of the pyramid levels, finest first (what neck and heads are built for)."""
        return level_strides(self.min_level, self.max_level)


def level_strides(min_level: int, max_level: int) -> List[int]:
    """Strides of the pyramid levels ``min_level..max_level``: level ``l`` has stride ``2**l``."""
    return [2**level for level in range(min_level, max_level + 1)]


EFFICIENTDET_SCALES: Dict[str, DetScale] = {
    'd0': DetScale('b0', 512, 64, 3, 3),
    'd1': DetScale('b1', 640, 88, 4, 3),
    'd2': DetScale('b2', 768, 112, 5, 3),
    'd3': DetScale('b3', 896, 160, 6, 4),
    'd4': DetScale('b4', 1024, 224, 7, 4),
    'd5': DetScale('b5', 1280, 288, 7, 4),
    'd6': DetScale('b6', 1280, 384, 8, 5, fusion='sum'),
    'd7': DetScale('b6', 1536, 384, 8, 5, anchor_scale=5.0, fusion='sum'),
    'd7x': DetScale('b7', 1536, 384, 8, 5, fusion='sum', max_level=8),
    # EfficientDet-Lite (official TF release): Lite backbones, plain-sum fusion, and ReLU6 in
    # the neck and head too (set by the Lite configs through act_cfg).
    'lite0': DetScale('lite0', 320, 64, 3, 3, anchor_scale=3.0, fusion='sum'),
    'lite1': DetScale('lite1', 384, 88, 4, 3, anchor_scale=3.0, fusion='sum'),
    'lite2': DetScale('lite2', 448, 112, 5, 3, anchor_scale=3.0, fusion='sum'),
    'lite3': DetScale('lite3', 512, 160, 6, 4, anchor_scale=4.0, fusion='sum'),
    'lite4': DetScale('lite4', 640, 224, 7, 4, anchor_scale=4.0, fusion='sum'),
}


def efficientdet_scale(phi: float) -> DetScale:
    """EfficientDet scaling for any ``phi`` from the paper's equations 1-3.

    BiFPN width ``64 * 1.35^phi`` (rounded to a multiple of 8), depth ``3 + phi``, head depth
    ``3 + phi / 3``, input ``512 + 128 * phi``; the backbone is EfficientNet with the same phi.
    """
    if phi < 0:
        raise ValueError(f'compound coefficient phi must be >= 0, got {phi}')
    key = f'd{int(phi)}'
    if float(phi).is_integer() and key in EFFICIENTDET_SCALES:
        return EFFICIENTDET_SCALES[key]
    return DetScale(
        backbone=phi,  # type: ignore[arg-type]  # a number means "apply the formula"
        input_size=make_divisible(efficientdet_input_size(phi), DET_INPUT_STEP),
        fpn_channels=make_divisible(64 * 1.35**phi, 8),
        fpn_repeats=int(round(3 + phi)),
        head_repeats=int(3 + phi // 3))


def efficientdet_input_size(phi: float) -> float:
    """The paper's input size ``512 + 128 * phi`` before rounding (equation 3)."""
    return DET_BASE_INPUT + DET_INPUT_STEP * phi


def get_det_scale(arch: Union[str, float, int]) -> DetScale:
    """Look up an EfficientDet variant by name (``'d3'``, ``'d7x'``, ``'lite0'``) or phi."""
    if isinstance(arch, (int, float)) and not isinstance(arch, bool):
        return efficientdet_scale(float(arch))
    key = str(arch).lower().replace('efficientdet_', '').replace('efficientdet-', '')
    if key in EFFICIENTDET_SCALES:
        return EFFICIENTDET_SCALES[key]
    raise KeyError(f'Unknown EfficientDet arch {arch!r}. Valid names: '
                   f'{", ".join(EFFICIENTDET_SCALES)}, or a number phi for the paper formula.')


def det_phi(arch: Union[str, float, int]) -> float:
    """The compound coefficient of an EfficientDet variant: ``'d3'`` -> 3, ``'lite2'`` -> 2,
    ``'d7x'`` -> 7, a number -> itself."""
    if isinstance(arch, (int, float)) and not isinstance(arch, bool):
        return float(arch)
    get_det_scale(arch)  # a clear error for unknown names
    key = str(arch).lower().replace('efficientdet_', '').replace('efficientdet-', '')
    return float(re.match(r'(?:d|lite)(\d+)', key).group(1))


def scaling_multipliers(phi: float,
                        alpha: float = ALPHA,
                        beta: float = BETA,
                        gamma: float = GAMMA) -> Tuple[float, float, float]:
    """(depth, width, resolution) multipliers of the compound-scaling formula."""
    return alpha**phi, beta**phi, gamma**phi
