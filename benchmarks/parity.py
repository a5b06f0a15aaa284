"""Check converted weights against the network they came from: ``EffNet`` layer by layer,
and random effdet models that predict like trained ones.

Used by the converter tests and the benchmarks (``backbone_parity.py``, the latency
benchmarks); handy after converting any new checkpoint too.
"""
from typing import Callable, List, Optional

import torch
import torch.nn as nn

from effdet_plugin.checkpoint import LAYOUTS, convert_efficientnet, detect_format
from effdet_plugin.deploy.random_weights import randomize_bn_stats
from effdet_plugin.models.backbones import EffNet


def realistic_effdet_predictions(model: nn.Module, image_size: int = 512,
                                 seed: int = 0) -> nn.Module:
    """Make a freshly built effdet model (``effdet.create_model(..., pretrained=False)``)
    behave like a trained one for parity and speed checks: random BN statistics
    (:func:`randomize_bn_stats`) and prediction convs scaled so that class logits spread with
    std ~2 and box deltas with std ~0.3. Fresh models give near-identical scores, i.e. ties in
    the NMS order, and almost no candidates above a score threshold."""
    randomize_bn_stats(model, seed).eval()
    x = torch.randn(1, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        cls, box = model(x)
        cls_std = torch.cat([c.flatten() for c in cls]).std()
        box_std = torch.cat([b.flatten() for b in box]).std()
        model.class_net.predict.conv_pw.weight.mul_(2.0 / cls_std)
        model.box_net.predict.conv_pw.weight.mul_(0.3 / box_std)
    return model


def classifier_weights(state_dict, source: str = 'auto') -> Optional[nn.Linear]:
    """The ImageNet classifier of a checkpoint as an ``nn.Linear`` (None if it has none)."""
    source, prefix = detect_format(state_dict, source)
    name = prefix + LAYOUTS[source].classifier
    if f'{name}.weight' not in state_dict:
        return None
    weight = state_dict[f'{name}.weight']
    fc = nn.Linear(weight.shape[1], weight.shape[0])
    fc.load_state_dict({'weight': weight, 'bias': state_dict[f'{name}.bias']})
    return fc


def reference_layers(net: nn.Module, source: str) -> List[Callable]:
    """The source network split like ``EffNet.layers``: stem, 7 stages, head conv."""
    if source == 'torchvision':
        return list(net.features)
    if source == 'timm':
        return ([lambda x: net.bn1(net.conv_stem(x))] + list(net.blocks) +
                [lambda x: net.bn2(net.conv_head(x))])
    raise ValueError(f'No reference split for source {source!r}; use torchvision or timm.')


@torch.no_grad()
def layer_diffs(ours: EffNet, reference: List[Callable], x: torch.Tensor) -> List[float]:
    """Max abs difference of every layer output (``ours`` must return all 9 layers)."""
    outs = ours(x)
    diffs, y = [], x
    for layer, out in zip(reference, outs):
        y = layer(y)
        if y.shape != out.shape:
            raise AssertionError(f'shape {tuple(out.shape)} != reference {tuple(y.shape)}')
        diffs.append((y - out).abs().max().item())
    return diffs


def converted_pair(net: nn.Module,
                   source: str,
                   tf_ported: bool = False,
                   seed: int = 0,
                   arch: Optional[str] = None) -> EffNet:
    """Randomise ``net``'s BN stats, convert it and return the matching ``EffNet`` (eval, all
    9 layers as outputs), built with the settings the conversion recommends."""
    randomize_bn_stats(net, seed).eval()
    result = convert_efficientnet(net.state_dict(), source, arch=arch, tf_ported=tf_ported)
    cfg = dict(result.backbone_cfg)
    cfg.pop('type')
    ours = EffNet(out_indices=tuple(range(EffNet.num_layers)), **cfg).eval()
    ours.load_state_dict(result.state_dict, strict=True)
    return ours
