"""``--launcher pytorch`` on CPU: gloo process group, DDP without device ids, in sync ranks."""
import pickle
import socket

import pytest
import torch
from mmengine.config import Config

from effdet_plugin.cli import setup_cpu_distributed

# Written next to the config and imported by both ranks through `custom_imports`: every rank
# saves its own weights (mmengine's CheckpointHook only saves on rank 0).
RANK_DUMP_HOOK = '''
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankDumpHook(Hook):
    def after_train(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        torch.save(dict(world_size=runner.world_size, wrapper=type(runner.model).__name__,
                        backend=torch.distributed.get_backend(),
                        state_dict=model.state_dict()),
                   f'{runner.work_dir}/rank{runner.rank}.pth')
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _cpu_env(tmp_path) -> dict:
    # Hide any GPU so that the CPU path is what gets tested, on any machine.
    return dict(CUDA_VISIBLE_DEVICES='', PORT=str(_free_port()), PYTHONPATH=str(tmp_path))


@pytest.fixture(scope='module')
def dist_run(tiny_det_cfg_factory, tmp_path_factory, run_tool):
    """2 CPU processes through tools/dist_train.sh, 2 epochs of 1 iteration per rank."""
    tmp_path = tmp_path_factory.mktemp('dist')
    (tmp_path / 'rank_dump_hook.py').write_text(RANK_DUMP_HOOK)
    work_dir = tmp_path / 'work_dir'
    cfg = tiny_det_cfg_factory(work_dir, max_epochs=2)
    cfg.custom_imports = dict(imports=['rank_dump_hook'], allow_failed_imports=False)
    cfg.custom_hooks = [dict(type='RankDumpHook')]
    cfg_file = tmp_path / 'tiny_dist.py'
    cfg.dump(str(cfg_file))
    proc = run_tool('tools/dist_train.sh', cfg_file, 2, '--work-dir', work_dir,
                    env=_cpu_env(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dict(tmp_path=tmp_path, cfg_file=cfg_file, work_dir=work_dir)


def test_ranks_end_with_identical_weights(dist_run):
    ranks = [torch.load(dist_run['work_dir'] / f'rank{r}.pth', map_location='cpu')
             for r in range(2)]
    for dump in ranks:
        assert dump['world_size'] == 2
        assert dump['wrapper'] == 'MMDistributedDataParallel'
        assert dump['backend'] == 'gloo'
    sd0, sd1 = ranks[0]['state_dict'], ranks[1]['state_dict']
    params = [k for k in sd0 if 'running_' not in k and 'num_batches_tracked' not in k]
    assert params and all(torch.equal(sd0[k], sd1[k]) for k in params)
    # BN running statistics are per-rank buffers (broadcast_buffers=False, as in mmengine's
    # default): they differ only if the ranks really trained on different shards, which is
    # what makes equal parameters a proof of gradient synchronisation.
    assert any(not torch.equal(sd0[k], sd1[k]) for k in sd0 if 'running_mean' in k)
    assert (dist_run['work_dir'] / 'epoch_2.pth').exists()


def test_dist_test_collects_all_images(dist_run, tiny_coco, run_tool):
    out = dist_run['tmp_path'] / 'results.pkl'
    proc = run_tool('tools/dist_test.sh', dist_run['cfg_file'],
                    dist_run['work_dir'] / 'epoch_2.pth', 2, '--out', out,
                    '--work-dir', dist_run['tmp_path'] / 'test_work_dir',
                    env=_cpu_env(dist_run['tmp_path']))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out, 'rb') as f:
        results = pickle.load(f)
    assert sorted(r['img_id'] for r in results) == list(range(1, tiny_coco.num_images + 1))


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU-only code path')
def test_setup_cpu_distributed_config_and_errors(monkeypatch):
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    assert setup_cpu_distributed(cfg, 'none') is False
    assert cfg.env_cfg.dist_cfg.backend == 'nccl' and 'model_wrapper_cfg' not in cfg
    with pytest.raises(RuntimeError, match='needs CUDA'):
        setup_cpu_distributed(cfg, 'slurm')
    monkeypatch.delenv('MASTER_ADDR', raising=False)
    with pytest.raises(RuntimeError, match='MASTER_ADDR'):
        setup_cpu_distributed(cfg, 'pytorch')


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU-only code path')
def test_setup_cpu_distributed_single_process_group(monkeypatch):
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(_free_port()))
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl')),
                      model_wrapper_cfg=dict(find_unused_parameters=True)))
    try:
        assert setup_cpu_distributed(cfg, 'pytorch') is True
        assert torch.distributed.get_backend() == 'gloo'
    finally:
        torch.distributed.destroy_process_group()
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg == dict(type='MMDistributedDataParallel',
                                         broadcast_buffers=False, find_unused_parameters=True,
                                         device_ids=None)
