"""Random-weight detectors that predict like trained ones, for export parity and speed checks."""
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


def randomize_bn_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN layer random affine parameters and running statistics, so that a parity
    check also covers the BN buffers (fresh models have mean 0 / var 1, which hide swaps)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return model


@torch.no_grad()
def realistic_random_detector(model: nn.Module, x: torch.Tensor, seed: int = 0,
                              cls_std: float = 2.0, cls_mean: float = -4.0,
                              box_std: float = 0.3) -> nn.Module:
    """Make a freshly built detector with an ``EffDetHead`` (or an RTMDet-Ins head:
    :func:`_spread_rtmdet_ins`) behave like a trained one.

    A fresh model has BN statistics 0 / 1 that let its signal fade to nothing through the
    BiFPN, so every class logit equals the prior bias: all scores tie and NMS order is
    arbitrary; random statistics alone give outputs that hardly depend on the image, with
    near-ties again. This gives every BN random affine parameters and the statistics of
    ``x`` itself (one forward in train mode) and scales the prediction convs so that on
    ``x`` the class logits have mean ``cls_mean`` and std ``cls_std`` and the box deltas std
    ``box_std``.

    Args:
        model (nn.Module): The detector (put into eval mode).
        x (Tensor): A representative input batch.
        seed (int): Seed of the BN statistics. Defaults to 0.
        cls_std (float): Target std of the class logits. Defaults to 2.0.
        cls_mean (float): Target mean of the class logits (-4: a few hundred candidates
            above 0.05 at 256x512). Defaults to -4.0.
        box_std (float): Target std of the box deltas. Defaults to 0.3.

    Returns:
        nn.Module: ``model``.
    """
    randomize_bn_stats(model, seed)
    # BN statistics of x itself: each layer then sees normalised inputs, so the output
    # depends on the image instead of on the random statistics alone
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: one batch gives its own statistics
    torch.manual_seed(seed)
    model.train()
    model.bbox_head(model.extract_feat(x))
    model.eval()
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
        # channels (nearly) constant on x would amplify rounding noise by 1 / sqrt(eps)
        norm.running_var.clamp_(min=0.1 * float(norm.running_var.median()))
    if hasattr(model.bbox_head, 'rtm_kernel'):
        return _spread_rtmdet_ins(model, x, cls_mean, cls_std)
    head = model.bbox_head
    cls_scores, bbox_preds = head(model.extract_feat(x))
    cls = torch.cat([c.flatten() for c in cls_scores])
    box = torch.cat([b.flatten() for b in bbox_preds])
    cls_conv, box_conv = head.cls_pred.pointwise_conv.conv, head.reg_pred.pointwise_conv.conv
    scale = cls_std / cls.std()
    cls_conv.weight.mul_(scale)
    cls_conv.bias.copy_((cls_conv.bias - cls.mean()) * scale + cls_mean)
    box_conv.weight.mul_(box_std / box.std())
    box_conv.bias.mul_(box_std / box.std())
    return model


def _standardize(convs, outputs, mean, std: float) -> None:
    """Scale ``convs`` (one per level, their ``outputs`` on the input) so that their outputs
    have ``mean`` (a float: all outputs together; a tensor: per output channel) and ``std``
    (per channel with a tensor ``mean``)."""
    per_channel = isinstance(mean, torch.Tensor)
    values = torch.cat([out.transpose(0, 1).flatten(1) for out in outputs], dim=1)
    if not per_channel:
        values = values.flatten()
    scale = std / values.std(dim=-1)
    for conv in convs:
        shape = (-1, ) + (1, ) * (conv.weight.dim() - 1) if per_channel else ()
        conv.weight.mul_(scale.reshape(shape))
        conv.bias.copy_((conv.bias - values.mean(dim=-1)) * scale + mean)


def _blob_kernel(head: nn.Module, radius: float, logit: float) -> torch.Tensor:
    """Dynamic-conv parameters (``head.parse_dynamic_params`` layout) whose mask is a
    diamond around the instance's point: logit ``logit * (1 - (|dx| + |dy|) / radius)``,
    with ``dx, dy`` the relative coordinates (pixels / (8 * stride)). Layer 1 takes
    ``relu(+-dx / radius)``, ``relu(+-dy / radius)``, the middle layers pass them on, the
    last sums them."""
    channels = head.dyconv_channels
    weights = [torch.zeros(num) for num in head.weight_nums]
    biases = [torch.zeros(num) for num in head.bias_nums]
    first = weights[0].view(channels, -1)  # (out, 2 coordinates + prototypes)
    for out, (coord, sign) in enumerate([(0, 1), (0, -1), (1, 1), (1, -1)]):
        first[out, coord] = sign / radius
    for middle in weights[1:-1]:
        middle.view(channels, channels)[range(4), range(4)] = 1
    weights[-1][:4] = -logit
    biases[-1][0] = logit
    return torch.cat(weights + biases)


@torch.no_grad()
def _spread_rtmdet_ins(model: nn.Module, x: torch.Tensor, cls_mean: float, cls_std: float,
                       box_mean: float = 2.0, box_std: float = 0.5, radius: float = 0.4,
                       mask_logit: float = 4.0, kernel_std: float = 0.15) -> nn.Module:
    """The prediction convs of an RTMDet-Ins head (BN statistics already of ``x``) scaled
    so that on ``x`` the class logits have ``cls_mean`` / ``cls_std``, the box distances
    (before the ReLU, in strides) ``box_mean`` / ``box_std``, and the dynamic-conv
    parameters the mean of :func:`_blob_kernel` (masks of ``2 * radius * 8`` strides
    across, as wide as the boxes) with std ``kernel_std`` over the points. A fresh head
    predicts masks at the threshold everywhere; random kernels give masks that are empty or
    cover the image."""
    head = model.bbox_head
    groups = dict(cls=list(head.rtm_cls), reg=list(head.rtm_reg), kernel=list(head.rtm_kernel))
    outputs = {name: [] for name in groups}
    hooks = [conv.register_forward_hook(lambda m, i, out, name=name: outputs[name].append(out))
             for name, convs in groups.items() for conv in convs]
    head(model.extract_feat(x))
    for hook in hooks:
        hook.remove()
    _standardize(groups['cls'], outputs['cls'], cls_mean, cls_std)
    _standardize(groups['reg'], outputs['reg'], box_mean, box_std)
    _standardize(groups['kernel'], outputs['kernel'],
                 _blob_kernel(head, radius, mask_logit).to(x.device), kernel_std)
    return model
