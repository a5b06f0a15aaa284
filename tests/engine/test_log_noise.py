"""Fine-tuning logs say what matters: no warning per frozen tensor, no 'unexpected key' for
backbone layers that are deliberately not built."""

import torch
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.runner.checkpoint import load_checkpoint

import effdet_plugin  # noqa: F401
from effdet_plugin.models.backbones import EffNet
from tests.conftest import LogMessages


def _logger_records(name):
    logger = MMLogger.get_instance(name)
    records = LogMessages()
    logger.addHandler(records)
    return logger, records


def test_unbuilt_layers_of_a_full_checkpoint_are_not_unexpected(tmp_path):
    full = EffNet('lite0', out_indices=(3, 5, 7, 8))  # all nine layers, like ImageNet weights
    ckpt = tmp_path / 'full.pth'
    torch.save({'state_dict': full.state_dict()}, ckpt)
    model = EffNet('lite0', out_indices=(3, 5, 7))  # layers.8 (head conv) not built
    _, records = _logger_records('effnet_load')
    load_checkpoint(model, str(ckpt), logger='current')
    assert not any('unexpected key' in m or 'missing keys' in m for m in records.messages)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, full.state_dict()[key])
    # a key of a built layer that the model lacks is still reported
    bad = dict(full.state_dict(), **{'layers.3.bogus': torch.zeros(1)})
    torch.save({'state_dict': bad}, ckpt)
    load_checkpoint(model, str(ckpt), logger='current')
    assert any('layers.3.bogus' in m for m in records.messages)


def test_frozen_parameters_logged_once():
    model = torch.nn.Module()
    model.backbone = EffNet('lite0', out_indices=(3, 5, 7), frozen_stages=1)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert len(frozen) > 5
    _, records = _logger_records('frozen_summary')
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', constructor='FrozenSummaryOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4),
        paramwise_cfg=dict(norm_decay_mult=0.)))
    assert not any('requires_grad=False' in m for m in records.messages)
    summary = [m for m in records.messages if 'frozen parameter tensors' in m]
    assert len(summary) == 1 and summary[0].startswith(f'{len(frozen)} frozen')
    assert 'backbone.layers.0' in summary[0] and 'backbone.layers.1' in summary[0]
    optimised = {id(p) for group in wrapper.optimizer.param_groups for p in group['params']}
    assert not optimised & {id(p) for p in frozen}
    assert len(optimised) == sum(p.requires_grad for p in model.parameters())
