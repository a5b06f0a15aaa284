"""SE gates as structured sparsity: per-channel gate statistics and channel pruning.

An MBConv block's squeeze-and-excitation gate multiplies each hidden channel by a sigmoid
output, per image. A channel whose gate stays near 0 over a dataset adds little to the block's
projection, so it is a candidate for removal. :class:`GateRecorder` collects, for every SE
block of an :class:`~effdet_plugin.models.backbones.EffNet`, each channel's mean gate, its
spread and the share of images where it is below a threshold. :func:`prune_state_dict` removes
whole hidden channels (expand conv, depthwise conv, their norms, the SE convs' rows/columns,
the projection's input columns) ranked by gate, by the L1 norm of the expand filter, or at
random, and :func:`pruned_hidden_channels` gives the ``hidden_channels`` argument that builds
the smaller backbone from its own config.

The SE squeeze reads the mean of every hidden channel, so removing a channel also changes the
squeeze of the kept ones. The removed channels' dataset-mean pooled activations are folded
into the squeeze conv's bias (exact when a channel's pooled value is constant, and the reason a
gate-ranked pruning at small ratios changes the outputs little).
"""
import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..models.backbones import EffNet
from ..models.backbones.efficientnet import scale_stages
from ..models.layers import MBConv
from ..models.layers.mbconv import SqueezeExcite

RANKINGS = ('gate', 'l1', 'random')


class NoSEBlocksError(ValueError):
    """The backbone has no SE block to read gates from or to prune."""


def se_blocks(backbone: nn.Module) -> Dict[str, MBConv]:
    """The prunable MBConv blocks of ``backbone`` by name (``'layers.<stage>.<block>'``).

    Prunable: the block has an SE gate and an expansion conv (the hidden width is free; a
    block without expansion has the input's width).

    Raises:
        NoSEBlocksError: None found, e.g. for the Lite variants, released without SE.
    """
    blocks = {name: m for name, m in backbone.named_modules()
              if isinstance(m, MBConv) and isinstance(m.se, SqueezeExcite)
              and not isinstance(m.expand_conv, nn.Identity)}
    if not blocks:
        arch = getattr(backbone, 'arch', type(backbone).__name__)
        raise NoSEBlocksError(
            f'backbone {arch!r} has no MBConv block with a squeeze-and-excitation gate: the '
            'EfficientNet-Lite variants were released without SE. Use a B-series backbone '
            "(arch='b0' ... 'b7' or a phi) for SE gate statistics and pruning.")
    return blocks


@dataclass
class GateStats:
    """Running per-channel statistics of one SE block's gates (and its squeeze input)."""
    threshold: float
    count: int = 0
    total: Optional[torch.Tensor] = None
    total_sq: Optional[torch.Tensor] = None
    below: Optional[torch.Tensor] = None
    pooled: Optional[torch.Tensor] = None  # sum of the squeeze input (pooled hidden channels)

    def add(self, gates: torch.Tensor, pooled: torch.Tensor) -> None:
        gates = gates.detach().double().flatten(1)  # (N, C)
        pooled = pooled.detach().double().flatten(1)
        if self.total is None:
            self.total = torch.zeros(gates.shape[1], dtype=torch.float64)
            self.total_sq = torch.zeros_like(self.total)
            self.below = torch.zeros_like(self.total)
            self.pooled = torch.zeros_like(self.total)
        self.count += gates.shape[0]
        self.total += gates.sum(0)
        self.total_sq += (gates ** 2).sum(0)
        self.below += (gates < self.threshold).double().sum(0)
        self.pooled += pooled.sum(0)

    @property
    def mean(self) -> torch.Tensor:
        return self.total / max(self.count, 1)

    @property
    def std(self) -> torch.Tensor:
        var = self.total_sq / max(self.count, 1) - self.mean ** 2
        return var.clamp_min(0).sqrt()

    @property
    def share_below(self) -> torch.Tensor:
        return self.below / max(self.count, 1)

    @property
    def pooled_mean(self) -> torch.Tensor:
        return self.pooled / max(self.count, 1)

    def as_dict(self) -> Dict[str, object]:
        return dict(images=self.count, threshold=self.threshold,
                    mean=self.mean.tolist(), std=self.std.tolist(),
                    share_below=self.share_below.tolist())


@dataclass
class GateRecorder:
    """Context manager that records the gates of every SE block of ``backbone``.

    Example::

        with GateRecorder(model.backbone) as recorder:
            for batch in loader:
                model.test_step(batch)
        recorder.stats['layers.2.0'].mean
    """
    backbone: nn.Module
    threshold: float = 0.1
    stats: Dict[str, GateStats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._handles: List[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> 'GateRecorder':
        for name, block in se_blocks(self.backbone).items():
            stats = self.stats.setdefault(name, GateStats(self.threshold))
            pooled: List[torch.Tensor] = []
            self._handles += [
                block.se.reduce.register_forward_pre_hook(
                    lambda _m, args, pooled=pooled: pooled.append(args[0])),
                block.se.expand.register_forward_hook(
                    lambda _m, _args, gates, stats=stats, pooled=pooled:
                    stats.add(gates, pooled.pop())),
            ]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def channel_order(block: MBConv, ranking: str, stats: Optional[GateStats] = None,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Hidden channels of ``block`` from least to most important under ``ranking``.

    Args:
        block (MBConv): The block.
        ranking (str): ``'gate'`` (mean gate over the data), ``'l1'`` (L1 norm of the expand
            conv's filter, the classic filter-pruning criterion) or ``'random'``.
        stats (GateStats, optional): Needed for ``'gate'``.
        generator (torch.Generator, optional): For ``'random'``.
    """
    channels = block.mid_channels
    if ranking == 'gate':
        if stats is None or stats.count == 0:
            raise ValueError('ranking by gate needs gate statistics: run GateRecorder first')
        score = stats.mean
    elif ranking == 'l1':
        score = block.expand_conv.conv.weight.detach().abs().flatten(1).sum(1)
    elif ranking == 'random':
        score = torch.rand(channels, generator=generator)
    else:
        raise ValueError(f'unknown ranking {ranking!r}; choose from {RANKINGS}')
    return torch.argsort(score.double(), stable=True)


def keep_indices(blocks: Mapping[str, MBConv], ratio: float, ranking: str,
                 stats: Optional[Mapping[str, GateStats]] = None,
                 seed: int = 0) -> Dict[str, torch.Tensor]:
    """Hidden channels each block keeps after removing ``ratio`` of them (per block, so that
    every ranking removes the same number of channels from each block, hence the same FLOPs).

    Returns:
        dict: Block name -> sorted indices of the kept channels.
    """
    if not 0 <= ratio < 1:
        raise ValueError(f'prune ratio must be in [0, 1), got {ratio}')
    generator = torch.Generator().manual_seed(seed)
    kept = {}
    for name, block in blocks.items():
        order = channel_order(block, ranking, (stats or {}).get(name), generator)
        drop = min(int(math.floor(ratio * block.mid_channels)), block.mid_channels - 1)
        kept[name] = torch.sort(order[drop:]).values
    return kept


# Which dimension of each tensor of a block holds the hidden channels.
_HIDDEN_DIM = {'expand_conv': 0, 'depthwise_conv': 0, 'se.expand': 0, 'se.reduce.conv.weight': 1,
               'project_conv.conv.weight': 1}


def _hidden_dim(key: str) -> Optional[int]:
    for part, dim in _HIDDEN_DIM.items():
        if key.startswith(part):
            return dim
    return None


def prune_state_dict(state_dict: Mapping[str, torch.Tensor], kept: Mapping[str, torch.Tensor],
                     prefix: str = 'backbone.',
                     stats: Optional[Mapping[str, GateStats]] = None) -> Dict[str, torch.Tensor]:
    """A copy of ``state_dict`` with only the ``kept`` hidden channels of each block.

    Args:
        state_dict (Mapping[str, Tensor]): Weights of the model (detector or backbone).
        kept (Mapping[str, Tensor]): From :func:`keep_indices`.
        prefix (str): Where the backbone's keys start. Defaults to ``'backbone.'``.
        stats (Mapping[str, GateStats], optional): With them, the removed channels' mean
            pooled activation is folded into the squeeze conv's bias.
    """
    out = dict(state_dict)
    for name, index in kept.items():
        block = f'{prefix}{name}.'
        keys = [k for k in state_dict if k.startswith(block)]
        reduce_w = state_dict[f'{block}se.reduce.conv.weight']
        removed = torch.ones(reduce_w.shape[1], dtype=torch.bool)
        removed[index] = False
        for key in keys:
            dim = _hidden_dim(key[len(block):])
            tensor = state_dict[key]
            if dim is None or tensor.dim() <= dim:  # num_batches_tracked, residual-free parts
                continue
            out[key] = tensor.index_select(dim, index.to(tensor.device)).clone()
        if stats is not None and name in stats and bool(removed.any()):
            mean = stats[name].pooled_mean.to(reduce_w)
            bias_key = f'{block}se.reduce.conv.bias'
            shift = reduce_w[:, removed].flatten(1) @ mean[removed]
            out[bias_key] = state_dict[bias_key] + shift
    return out


def pruned_hidden_channels(backbone: EffNet,
                           kept: Mapping[str, torch.Tensor]) -> List[List[Optional[int]]]:
    """The ``hidden_channels`` argument of :class:`EffNet` for the pruned widths (all seven
    stages, ``None`` where a block keeps its width or was not built)."""
    widths: List[List[Optional[int]]] = []
    for stage in range(1, 8):
        layer = backbone.layers[stage] if stage < len(backbone.layers) else None
        # stages past the deepest output are not built: the stage table has their depth
        repeats = len(layer) if layer is not None else scale_stages(backbone.scale)[stage - 1].repeats
        widths.append([None] * repeats)
    for name, index in kept.items():
        _, stage, block = name.split('.')
        widths[int(stage) - 1][int(block)] = int(index.numel())
    return widths


def prunable_channels(blocks: Mapping[str, MBConv]) -> int:
    """Hidden channels of all prunable blocks together."""
    return sum(block.mid_channels for block in blocks.values())


def stats_to_json(stats: Mapping[str, GateStats]) -> Dict[str, object]:
    return {name: s.as_dict() for name, s in stats.items()}


def plot_gate_heatmaps(stats: Mapping[str, GateStats], out_dir: str) -> List[str]:
    """One PNG per stage: blocks as rows, hidden channels (sorted by mean gate) as columns."""
    import os.path as osp

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    by_stage: Dict[str, List[Tuple[str, np.ndarray]]] = {}
    for name, s in stats.items():
        by_stage.setdefault(name.split('.')[1], []).append(
            (name, np.sort(s.mean.numpy())[::-1]))
    paths = []
    for stage, rows in sorted(by_stage.items(), key=lambda item: int(item[0])):
        width = max(len(r) for _, r in rows)
        grid = np.full((len(rows), width), np.nan)
        for i, (_, row) in enumerate(rows):
            grid[i, :len(row)] = row
        fig, ax = plt.subplots(figsize=(8, 0.5 + 0.4 * len(rows)))
        image = ax.imshow(grid, aspect='auto', vmin=0, vmax=1, cmap='viridis',
                          interpolation='nearest')
        ax.set_yticks(range(len(rows)), [name for name, _ in rows])
        ax.set_xlabel('hidden channel (sorted by mean gate)')
        ax.set_title(f'stage {stage}: mean SE gate per channel')
        fig.colorbar(image, ax=ax, label='mean gate')
        fig.tight_layout()
        path = osp.join(out_dir, f'gates_stage{stage}.png')
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def iterate_gates(model: nn.Module, batches: Iterable, threshold: float = 0.1,
                  max_images: Optional[int] = None) -> Dict[str, GateStats]:
    """Run ``model``'s backbone over ``batches`` (mmdet data batches) and return the gate
    statistics of every SE block."""
    model.eval()
    seen = 0
    with GateRecorder(model.backbone, threshold) as recorder, torch.no_grad():
        for batch in batches:
            data = model.data_preprocessor(batch, False)
            model.backbone(data['inputs'])
            seen += data['inputs'].shape[0]
            if max_images is not None and seen >= max_images:
                break
    return recorder.stats


def check_prunable_norms(blocks: Mapping[str, MBConv]) -> None:
    """Pruning slices per-channel norm statistics; a GroupNorm's groups would break."""
    for name, block in blocks.items():
        for module in (block.expand_conv, block.depthwise_conv):
            norm = getattr(module, 'norm_name', None)
            layer = getattr(module, norm) if norm else None
            if isinstance(layer, nn.GroupNorm):
                raise ValueError(f'{name}: pruning needs per-channel norms (BN, SyncBN); '
                                 'GroupNorm ties channels into groups')
