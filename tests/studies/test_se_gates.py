"""SE gates as structured sparsity: gate statistics, pruning by gate, the pruned model's FLOPs,
and tools/analysis/se_gates.py end to end at tiny scale."""
import json

import pytest
import torch
from mmengine.analysis import FlopAnalyzer
from torch import nn

from effdet_plugin.models.backbones import EffNet
from effdet_plugin.studies import se_gates


class _Detector(nn.Module):
    """Holds a backbone under ``backbone.`` like mmdet's detectors."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone


def _silence(blocks, share: float) -> dict:
    """Gate ~0 (SE bias -100) and no squeeze input for the first ``share`` of each block's
    hidden channels: such channels contribute nothing, so removing them changes nothing."""
    silenced = {}
    with torch.no_grad():
        for name, block in blocks.items():
            k = int(share * block.mid_channels)
            block.se.expand.conv.bias[:k] = -100
            block.se.reduce.conv.weight[:, :k] = 0
            silenced[name] = set(range(k))
    return silenced


def _pruned(net: EffNet, kept, stats) -> EffNet:
    state = se_gates.prune_state_dict(_Detector(net).state_dict(), kept, stats=stats)
    small = _Detector(EffNet('b0', out_indices=net.out_indices,
                             hidden_channels=se_gates.pruned_hidden_channels(net, kept)))
    small.load_state_dict(state, strict=True)
    return small.backbone.eval()


@pytest.fixture(scope='module')
def silenced_b0():
    torch.manual_seed(0)
    net = EffNet('b0', out_indices=(3, 5, 7)).eval()
    blocks = se_gates.se_blocks(net)
    silenced = _silence(blocks, 0.25)
    x = torch.randn(2, 3, 96, 96)
    with se_gates.GateRecorder(net) as recorder, torch.no_grad():
        reference = net(x)
    return net, blocks, silenced, x, reference, recorder.stats


def test_gate_statistics(silenced_b0):
    net, blocks, silenced, _, _, stats = silenced_b0
    assert set(stats) == set(blocks) and len(blocks) == 15  # B0: 16 blocks, the first has no expansion
    for name, s in stats.items():
        assert s.count == 2
        dead = sorted(silenced[name])
        assert float(s.mean[dead].max()) < 1e-30
        assert bool((s.share_below[dead] == 1).all())
        alive = [c for c in range(blocks[name].mid_channels) if c not in silenced[name]]
        assert float(s.mean[alive].min()) > 0
        assert bool(((s.std >= 0) & (s.share_below <= 1)).all())


def test_pruning_silenced_channels_keeps_outputs(silenced_b0):
    net, blocks, silenced, x, reference, stats = silenced_b0
    kept = se_gates.keep_indices(blocks, 0.25, 'gate', stats)
    for name, index in kept.items():
        assert not set(index.tolist()) & silenced[name], name  # exactly the silenced ones went
        assert index.numel() == blocks[name].mid_channels - len(silenced[name])
    with torch.no_grad():
        outputs = _pruned(net, kept, stats)(x)
    for ref, out in zip(reference, outputs):
        assert float((ref - out).abs().max() / ref.abs().max()) < 1e-4
    # the same share removed at random hits live channels: the outputs move
    kept = se_gates.keep_indices(blocks, 0.25, 'random', stats, seed=1)
    with torch.no_grad():
        outputs = _pruned(net, kept, stats)(x)
    assert float((reference[0] - outputs[0]).abs().max() / reference[0].abs().max()) > 0.05


def _conv_macs(net: nn.Module, shape=(1, 3, 96, 96)) -> int:
    analyzer = FlopAnalyzer(net.eval(), (torch.zeros(shape), ))
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analyzer.by_operator()['conv']


def test_flops_drop_by_the_counted_amount(silenced_b0):
    net, blocks, _, _, _, stats = silenced_b0
    kept = se_gates.keep_indices(blocks, 0.5, 'l1')
    small = _pruned(net, kept, stats)
    # multiply-adds of every conv that loses the removed hidden channels, at a 96x96 input
    expected = 0
    size = {1: 48, 2: 24, 3: 12, 4: 6, 5: 6, 6: 3, 7: 3}  # output side of each stage
    for name, block in blocks.items():
        _, stage, index = name.split('.')
        removed = block.mid_channels - kept[name].numel()
        out_hw = size[int(stage)] ** 2
        in_hw = (size[int(stage) - 1] if index == '0' else size[int(stage)]) ** 2
        conv = block.expand_conv.conv
        expected += removed * (conv.in_channels * in_hw
                               + block.depthwise_conv.conv.kernel_size[0] ** 2 * out_hw
                               + 2 * block.se.reduce.conv.out_channels
                               + block.project_conv.conv.out_channels * out_hw)
    assert _conv_macs(net) - _conv_macs(small) == expected


def test_lite_has_no_se_blocks():
    with pytest.raises(se_gates.NoSEBlocksError, match='Lite variants were released without SE'):
        se_gates.se_blocks(EffNet('lite0'))


def test_hidden_channels_must_fit_the_arch():
    with pytest.raises(ValueError, match='one width .* per block'):
        EffNet('b0', hidden_channels=[[None]] * 7)


def test_se_gates_cli(tiny_det_cfg_factory, tmp_path, run_tool):
    """Gates, pruning by gate vs random, fine-tuning: every file written, the pruned models
    smaller by the same FLOPs, and a Lite model refused with the reason."""
    cfg = tiny_det_cfg_factory(tmp_path / 'work', with_val=True)
    cfg.model.backbone = dict(type='EffNet', arch='b0', out_indices=(3, 5, 7), init_cfg=None)
    cfg.model.neck.in_channels = [40, 112, 320]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0,
                                end=2)]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2, by_epoch=False)
    cfg.log_processor = dict(type='LogProcessor', window_size=1, by_epoch=False)
    cfg.custom_imports = dict(imports=['effdet_plugin'], allow_failed_imports=False)
    cfg_path = tmp_path / 'b0.py'
    cfg.dump(str(cfg_path))
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    ckpt = tmp_path / 'b0.pth'
    torch.manual_seed(0)
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict()), ckpt)

    out = tmp_path / 'se'
    result = run_tool('tools/analysis/se_gates.py', cfg_path, ckpt, '--out', out, '--prune',
                      '0.25', '--rankings', 'gate', 'random', '--seeds', '2', '--finetune',
                      '2', '--latency-time', '0', '--shape', '64', '64')
    assert result.returncode == 0, result.stderr[-3000:]
    gates = json.loads((out / 'gates.json').read_text())
    assert len(gates['blocks']) == 15 and gates['blocks']['layers.2.0']['images'] == 4
    assert sorted(p.name for p in out.glob('gates_stage*.png')) == [
        f'gates_stage{s}.png' for s in range(2, 8)]
    rows = (out / 'prune.csv').read_text().splitlines()
    assert len(rows) == 5, rows  # header, unpruned, gate, random seeds 0 and 1
    header = rows[0].split(',')
    values = [dict(zip(header, r.split(','))) for r in rows[1:]]
    flops = {r['ranking']: float(r['flops']) for r in values}
    assert flops['gate'] == flops['random'] < flops['none']
    # the unpruned model is fine-tuned alike: the baseline of the fine-tuned rows
    assert all(r['ap_finetuned'] != '' for r in values)
    assert (out / 'runs' / 'unpruned_ft' / 'iter_2.pth').is_file()
    assert all(r['commit'] and int(r['threads']) >= 1 for r in values)
    assert '| 0.25 | random | 2 |' in (out / 'prune.md').read_text()  # mean ± std of 2 draws
    for name in ('pruned_gate_0.25_s0', 'pruned_random_0.25_s0', 'pruned_random_0.25_s1'):
        assert (out / f'{name}.py').is_file() and (out / f'{name}.pth').is_file()
    assert 'AP fine-tuned' in result.stdout

    # --retime: latency of every finished model from one interleaved timing, nothing retrained
    result = run_tool('tools/analysis/se_gates.py', cfg_path, ckpt, '--out', out, '--retime',
                      '--finetune', '2', '--shape', '64', '64')
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(r['latency_ms'] == '' for r in values)  # --latency-time 0 above
    rows = (out / 'prune.csv').read_text().splitlines()
    retimed = {r['ranking']: r for r in (dict(zip(header, r.split(','))) for r in rows[1:])}
    assert len(rows) == 5 and all(float(r['latency_ms']) > 0 for r in retimed.values())
    assert retimed['gate']['latency_ms'] == retimed['random']['latency_ms']  # one architecture
    assert [dict(zip(header, r.split(',')))['ap_finetuned'] for r in rows[1:]] == [
        r['ap_finetuned'] for r in values]

    cfg.model.backbone.arch = 'lite0'
    cfg.dump(str(cfg_path))
    result = run_tool('tools/analysis/se_gates.py', cfg_path, ckpt, '--out', tmp_path / 'lite')
    assert result.returncode == 1
    assert 'error: ' in result.stderr and 'released without SE' in result.stderr
