"""Model speed (tools/benchmark.py) on the tiny RetinaNet with 1 timed repeat."""
import json

import pytest

from effdet_plugin.deploy import benchmark as bench


def test_benchmark_numbers(tiny_det_cfg):
    cfg = tiny_det_cfg()
    small = bench.benchmark(cfg, shape=(64, 64), batch_size=2, warmup=0, repeats=1)
    model = bench.build_model(cfg, None, 'cpu')
    assert small['params'] == sum(p.numel() for p in model.parameters())
    assert small['latency_ms'] > 0 and small['latency_std_ms'] == 0
    assert small['throughput'] == pytest.approx(2 / (small['latency_ms'] / 1e3))
    # The network is convolutional: 4x the pixels, ~4x the FLOPs; the count is per image.
    large = bench.benchmark(cfg, shape=(128, 128), batch_size=1, warmup=0, repeats=1)
    assert small['flops'] > 0
    assert large['flops'] / small['flops'] == pytest.approx(4, rel=0.05)
    table = bench.format_table('tiny', small)
    for row in ('params', 'FLOPs / image', 'latency / batch', 'throughput', '2 x 3 x 64 x 64',
                'channels_last'):
        assert row in table
    # channels-last by default, as tools/test.py and tools/infer.py; the FLOPs do not change
    assert small['memory_format'] == 'channels_last'
    plain = bench.benchmark(cfg, shape=(64, 64), batch_size=2, warmup=0, repeats=1,
                            channels_last=False)
    assert plain['memory_format'] == 'contiguous' and plain['flops'] == small['flops']


def test_benchmark_bf16_and_cli(tiny_det_cfg, tmp_path, run_tool):
    cfg_file = tmp_path / 'tiny.py'
    tiny_det_cfg().dump(str(cfg_file))
    out = tmp_path / 'bench.json'
    proc = run_tool('tools/benchmark.py', cfg_file, '--shape', 64, 64, '--warmup', 1,
                    '--repeats', 1, '--amp', '--out-json', out, '--no-channels-last')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'throughput' in proc.stdout and 'bfloat16' in proc.stdout
    result = json.loads(out.read_text())
    assert result['dtype'] == 'bfloat16' and result['repeats'] == 1 and result['flops'] > 0
    assert result['memory_format'] == 'contiguous'
