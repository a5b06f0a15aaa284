"""The models of a scaling study, relative to the config's own model: search candidates (the
coefficient grid), phi-sweep points per dimension, and what the results say (marginal gains,
saturation). All multipliers come from :mod:`effdet_plugin.models.utils.scaling`.
"""
import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ...models.utils.scaling import ALPHA, BETA, GAMMA, efficientdet_input_size

#: Scaling dimensions of a sweep: all at once, or one at a time at the same FLOPs growth.
DIMS = ('compound', 'depth', 'width', 'resolution')
OFFICIAL = (ALPHA, BETA, GAMMA)


@dataclass(frozen=True)
class ScalePoint:
    """One model of a scaling study, relative to the config's model.

    Args:
        name (str): Unique name (CSV key and work-dir name).
        dim (str): ``'compound'``, ``'depth'``, ``'width'``, ``'resolution'`` or ``'search'``.
        phi (float): Compound coefficient of the point (1 for search candidates).
        depth (float): Backbone depth multiplier.
        width (float): Backbone width multiplier.
        resolution (float): Input-size multiplier.
        det_phi (float, optional): Steps of EfficientDet's phi rule for an ``EffBiFPN`` neck
            and ``EffDetHead`` (width, repeats, head depth); None keeps them.
        alpha, beta, gamma (float, optional): The coefficient triplet of a search candidate.
    """
    name: str
    dim: str
    phi: float
    depth: float
    width: float
    resolution: float
    det_phi: Optional[float] = None
    alpha: Optional[float] = None
    beta: Optional[float] = None
    gamma: Optional[float] = None

    def as_row(self) -> Dict[str, object]:
        return asdict(self)


def flops_growth(alpha: float, beta: float, gamma: float) -> float:
    """The formula's FLOPs growth per unit of phi: ``alpha * beta^2 * gamma^2``."""
    return alpha * beta**2 * gamma**2


def coefficient_grid(growth: float = 2.0, step: float = 0.05,
                     tol: float = 0.05) -> List[Tuple[float, float, float]]:
    """Every ``(alpha, beta, gamma)`` on a ``step`` grid from 1 with
    ``|alpha * beta^2 * gamma^2 / growth - 1| <= tol``, sorted.

    Raises:
        ValueError: If no triplet satisfies the constraint.
    """
    if step <= 0 or tol < 0:
        raise ValueError(f'need --grid-step > 0 and --tol >= 0, got {step} and {tol}')

    def axis(limit: float) -> List[float]:
        return [round(1 + i * step, 6) for i in range(int((limit - 1) / step + 1e-9) + 1)]

    # alpha <= growth and beta, gamma <= sqrt(growth) (the others >= 1), plus tolerance
    top = growth * (1 + tol)
    grid = [(a, b, g) for a in axis(top) for b in axis(math.sqrt(top)) for g in axis(math.sqrt(top))
            if abs(flops_growth(a, b, g) / growth - 1) <= tol]
    if not grid:
        raise ValueError(
            f'no (alpha, beta, gamma) >= 1 on a {step} grid has alpha * beta^2 * gamma^2 '
            f'within {tol:.0%} of the FLOPs growth {growth} (it must be >= 1); raise --tol, '
            f'make --grid-step finer or change --flops-growth.')
    return grid


def select_candidates(grid: Sequence[Tuple[float, float, float]],
                      max_candidates: Optional[int]) -> List[Tuple[float, float, float]]:
    """The official triplet first, then ``max_candidates - 1`` grid triplets evenly spread
    over the sorted grid (the same subset on every run); all of them when None."""
    rest = [t for t in sorted(grid) if not _same(t, OFFICIAL)]
    if max_candidates is not None:
        if max_candidates < 1:
            raise ValueError(f'--max-candidates must be >= 1, got {max_candidates}')
        n = min(max_candidates - 1, len(rest))
        rest = [rest[round(i * (len(rest) - 1) / max(n - 1, 1))] for i in range(n)] if n else []
    return [OFFICIAL] + rest


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(abs(x - y) < 1e-9 for x, y in zip(a, b))


def search_points(triplets: Sequence[Tuple[float, float, float]]) -> List[ScalePoint]:
    """Search candidates: the base model scaled to phi=1 by each triplet."""
    return [
        ScalePoint(name=f'a{a:.2f}_b{b:.2f}_g{g:.2f}', dim='search', phi=1.0, depth=a, width=b,
                   resolution=g, alpha=a, beta=b, gamma=g) for a, b, g in triplets
    ]


def sweep_points(phis: Sequence[float],
                 dims: Sequence[str] = DIMS,
                 alpha: float = ALPHA,
                 beta: float = BETA,
                 gamma: float = GAMMA,
                 base_det_phi: Optional[float] = None) -> List[ScalePoint]:
    """Points of a phi sweep, one per (dimension, phi).

    ``compound`` scales backbone depth and width by ``alpha^phi`` and ``beta^phi``; with an
    EfficientDet neck/head (``base_det_phi`` given) the neck, head and input size follow
    EfficientDet's phi rule (input ``512 + 128 phi``, relative to the base variant's), else the
    input grows by ``gamma^phi``. A single dimension takes the whole formula growth
    ``g = alpha * beta^2 * gamma^2`` alone: depth ``g^phi``, width and resolution
    ``g^(phi / 2)``, so every dimension aims at the same backbone FLOPs at the same phi.
    """
    unknown = sorted(set(dims) - set(DIMS))
    if unknown:
        raise ValueError(f'unknown scaling dimension(s) {unknown}; choose from {list(DIMS)}')
    growth = flops_growth(alpha, beta, gamma)
    points = []
    for dim in dims:
        for phi in phis:
            if dim == 'compound':
                if base_det_phi is None:
                    res, steps = gamma**phi, None
                else:
                    if base_det_phi + phi < 0:
                        raise ValueError(
                            f'phi {phi:g} goes below EfficientDet phi 0 (the config is phi '
                            f'{base_det_phi:g}); use phis >= {-base_det_phi:g}')
                    res = (efficientdet_input_size(base_det_phi + phi) /
                           efficientdet_input_size(base_det_phi))
                    steps = phi
                depth, width = alpha**phi, beta**phi
            else:
                steps = None
                depth = growth**phi if dim == 'depth' else 1.0
                width = growth**(phi / 2) if dim == 'width' else 1.0
                res = growth**(phi / 2) if dim == 'resolution' else 1.0
            points.append(ScalePoint(name=f'{dim}_phi{phi:g}', dim=dim, phi=float(phi),
                                     depth=depth, width=width, resolution=res, det_phi=steps))
    return points


#: The config's own model (phi 0), the reference of every growth.
IDENTITY = ScalePoint(name='base', dim='base', phi=0.0, depth=1.0, width=1.0, resolution=1.0)


def same_model(point: ScalePoint) -> Tuple[float, ...]:
    """What decides the trained model: points alike here (phi 0 of every dimension) are one
    model, trained once."""
    return tuple(round(float(v or 0.0), 9)
                 for v in (point.depth, point.width, point.resolution, point.det_phi))


def marginal_gains(points: Sequence[Dict[str, float]]) -> List[Dict[str, float]]:
    """AP gained per extra GFLOP between consecutive phis of one dimension.

    Args:
        points: ``phi``, ``gflops`` and ``ap`` of each phi, any order.

    Returns:
        list[dict]: ``phi_from``, ``phi_to``, ``gain`` (AP per GFLOP; None when FLOPs do not
        grow) per step, in phi order.
    """
    ordered = sorted(points, key=lambda p: p['phi'])
    steps = []
    for lo, hi in zip(ordered, ordered[1:]):
        extra = hi['gflops'] - lo['gflops']
        gain = (hi['ap'] - lo['ap']) / extra if extra > 0 else None
        steps.append(dict(phi_from=lo['phi'], phi_to=hi['phi'], gain=gain))
    return steps


def saturation_phi(steps: Sequence[Dict[str, float]], min_gain: float) -> Optional[float]:
    """The phi after which the marginal gain first falls below ``min_gain`` (None: never)."""
    for step in steps:
        if step['gain'] is not None and step['gain'] < min_gain:
            return step['phi_from']
    return None
