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
    """Make a freshly built detector with an ``EffDetHead`` behave like a trained one.

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
