"""Where the weights check applies: our tools and ``CheckedRunner``, never a stock mmdet run
that only imports the plugin; unreadable checkpoints end the tools with one error line."""
import hashlib
import json
import subprocess
import sys

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

from effdet_plugin.models.backbones import EffNet

register_all_modules()

# Loads a config's ``load_from`` with mmengine's stock Runner and prints what it did.
STOCK_LOAD = r'''
import contextlib, hashlib, io, json, logging, sys, warnings
import torch
import mmengine.runner.checkpoint as checkpoint
from mmengine.config import Config
from mmengine.runner import Runner

cfg = Config.fromfile(sys.argv[1])
runner = Runner.from_cfg(cfg)
messages = []
handler = logging.Handler()
handler.emit = lambda record: messages.append(record.getMessage())
runner.logger.addHandler(handler)
printed = io.StringIO()  # mmengine prints the key report when no logger is given
with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(printed):
    warnings.simplefilter('always')
    runner.load_or_resume()
print(json.dumps(dict(
    imported='effdet_plugin' in sys.modules,
    runner=type(runner).__name__,
    loader=[checkpoint.load_state_dict.__module__,
            checkpoint.CheckpointLoader.load_checkpoint.__func__.__module__],
    safe_globals=sorted(g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
                        for g in torch.serialization.get_safe_globals()),
    tensors={k: hashlib.sha1(v.cpu().numpy().tobytes()).hexdigest()
             for k, v in runner.model.state_dict().items()},
    messages=messages + printed.getvalue().splitlines(), warnings=[str(w.message) for w in caught])))
'''


def _tiny(tiny_det_cfg, base_channels: int = 8):
    cfg = tiny_det_cfg()
    cfg.model.backbone.update(base_channels=base_channels, stem_channels=base_channels)
    return cfg, MODELS.build(cfg.model)


def _one_error(run) -> str:
    errors = [line for line in run.stderr.splitlines() if line.startswith('error: ')]
    assert run.returncode == 1 and len(errors) == 1, run.stderr[-3000:]
    assert 'Traceback' not in run.stderr, run.stderr[-3000:]
    return errors[0]


def test_stock_config_importing_the_plugin_loads_like_mmdet(tiny_det_cfg, tmp_path):
    """A partial checkpoint (the backbone of a wider variant: most tensors do not fit) loads
    into a stock mmdet config exactly as without the plugin: same tensors, same messages, no
    error, mmengine's loader and torch's allow-list untouched."""
    cfg, model = _tiny(tiny_det_cfg)
    _, wide = _tiny(tiny_det_cfg, base_channels=16)
    partial = dict(model.state_dict(), **{k: v for k, v in wide.state_dict().items()
                                          if k.startswith('backbone.')})
    torch.save(dict(state_dict=partial), tmp_path / 'partial.pth')
    cfg.load_from = str(tmp_path / 'partial.pth')
    runs = {}
    for name, imports in (('plain', None), ('plugin', ['effdet_plugin'])):
        if imports:
            cfg.custom_imports = dict(imports=imports, allow_failed_imports=False)
        cfg.work_dir = str(tmp_path / name)
        cfg.dump(str(tmp_path / f'{name}.py'))
        run = subprocess.run([sys.executable, '-c', STOCK_LOAD, str(tmp_path / f'{name}.py')],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        runs[name] = json.loads(run.stdout.strip().splitlines()[-1])
    plain, plugin = runs['plain'], runs['plugin']
    assert (plain['imported'], plugin['imported']) == (False, True)
    assert plugin['runner'] == 'Runner'
    assert plugin['loader'] == ['mmengine.runner.checkpoint'] * 2
    assert plugin['safe_globals'] == plain['safe_globals']
    assert plugin['tensors'] == plain['tensors']
    assert plugin['messages'] == plain['messages']
    assert any('size mismatch for backbone.conv1.weight' in m for m in plain['messages'])
    assert plugin['warnings'] == plain['warnings']
    # the backbone kept its own initialisation, the rest was loaded
    loaded = {k for k, v in model.state_dict().items()
              if plugin['tensors'][k] == hashlib.sha1(v.numpy().tobytes()).hexdigest()}
    assert 'neck.fpn_convs.0.conv.weight' in loaded and 'backbone.conv1.weight' not in loaded


@pytest.mark.parametrize('size', [0, 5000], ids=['empty', 'truncated'])
@pytest.mark.parametrize('tool', ['test', 'infer'])
def test_test_and_infer_name_an_unreadable_checkpoint(tool, size, tiny_det_cfg, tiny_coco,
                                                      tmp_path, run_tool):
    cfg, model = _tiny(tiny_det_cfg)
    cfg.dump(str(tmp_path / 'tiny.py'))
    torch.save(dict(state_dict=model.state_dict()), tmp_path / 'good.pth')
    bad = tmp_path / 'bad.pth'
    bad.write_bytes((tmp_path / 'good.pth').read_bytes()[:size])
    args = (['--work-dir', tmp_path / 'test'] if tool == 'test' else
            [f'{tiny_coco.data_root}/images', '--out-dir', tmp_path / 'out'])
    error = _one_error(run_tool(f'tools/{tool}.py', tmp_path / 'tiny.py', bad, *args))
    assert f"Cannot read checkpoint '{bad}' ({size} bytes)" in error
    assert ('is empty' if size == 0 else 'truncated') in error
    assert 'use another checkpoint' in error
    assert not (tmp_path / 'out').exists() or not list((tmp_path / 'out').iterdir())


def test_train_refuses_b_series_backbone_weights_for_lite(tiny_det_cfg, tmp_path, run_tool):
    """Every Lite0 tensor is in a B0 checkpoint; B0's squeeze-excitation tensors are not in
    Lite0: the share of the checkpoint that fits stops the run."""
    out_indices = (3, 5, 7)
    torch.save(dict(state_dict=EffNet('b0', out_indices=out_indices).state_dict()),
               tmp_path / 'b0.pth')
    cfg = tiny_det_cfg()
    cfg.model.backbone = dict(type='EffNet', arch='lite0', out_indices=out_indices,
                              init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'b0.pth')))
    cfg.model.neck.in_channels = list(EffNet('lite0', out_indices=out_indices).out_channels)
    cfg.dump(str(tmp_path / 'lite.py'))
    error = _one_error(run_tool('tools/train.py', tmp_path / 'lite.py'))
    assert f'{tmp_path}/b0.pth (init_cfg of backbone) does not fit EffNet' in error
    assert "of the checkpoint's tensors fit the model, 90% needed" in error
    assert 'layers.1.0.se.reduce.conv.weight' in error
    assert not list((tmp_path / 'work_dir').glob('*.pth'))
