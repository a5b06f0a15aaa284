"""The normalisation study (tools/analysis/norm_study.py): norm and batch variants of a config,
the same images and effective learning rate per run, paired tables, plot, resumable files."""
import csv
import json
from pathlib import Path

import pytest
from mmengine.config import Config

from effdet_plugin.studies import norm_study
from tests.conftest import write_tiny_coco
from tests.data_helpers import pixel_free_coco_flags

REPO = Path(__file__).resolve().parents[2]
CONFIG = 'configs/demo/effdet_d0_nuclei_scratch.py'
pytestmark = pytest.mark.usefixtures('repo_cwd')


def test_norm_configs_set_every_part():
    cfg = Config.fromfile(CONFIG)
    for norm, eval_mode in (('bn', False), ('frozen_bn', True)):
        normed = norm_study.norm_config(cfg, norm)
        for part in norm_study.PARTS:
            assert normed.model[part].norm_cfg.type == 'BN'
            assert normed.model[part].norm_eval is eval_mode
    gn = norm_study.norm_config(cfg, 'gn', gn_groups=16)
    assert all(gn.model[p].norm_cfg == dict(type='GN', num_groups=16) and not gn.model[p].norm_eval
               for p in norm_study.PARTS)
    assert cfg.model.backbone.norm_cfg.type == 'BN'  # a copy: the config is unchanged
    with pytest.raises(ValueError, match='needs a config with BatchNorm'):
        norm_study.norm_config(gn, 'bn')


def test_batch_configs_see_the_same_images_at_a_linearly_scaled_rate():
    cfg = Config.fromfile(CONFIG)
    lr, eta_min = cfg.optim_wrapper.optimizer.lr, cfg.param_scheduler[1].eta_min
    ema = next(h for h in cfg.custom_hooks if h.type == 'EMAHook')
    for batch, iters in ((1, 400), (2, 200), (4, 100), (8, 50)):
        run = norm_study.batch_config(cfg, batch, ref_batch=4, iters=100)
        assert run.train_dataloader.batch_size == batch
        assert run.train_cfg.max_iters * batch == 400 == iters * batch
        assert run.optim_wrapper.optimizer.lr == pytest.approx(lr * batch / 4)
        assert run.param_scheduler[1].eta_min == pytest.approx(eta_min * batch / 4)
        warmup = run.param_scheduler[0]
        assert warmup.end * batch == pytest.approx(30 / 400 * 100 * 4, abs=batch)  # in images
        run_ema = next(h for h in run.custom_hooks if h.type == 'EMAHook')
        assert run_ema.momentum == pytest.approx(ema.momentum * batch / 4)
        assert run_ema.gamma == round(ema.gamma * 4 / batch)
    sqrt = norm_study.batch_config(cfg, 1, ref_batch=4, iters=100, lr_scaling='sqrt')
    assert sqrt.optim_wrapper.optimizer.lr == pytest.approx(lr / 2)


def test_grid_tables_plot_and_resume_with_a_stub_trainer(tmp_path, monkeypatch, capsys):
    """3 norms x 2 batches x 2 seeds, the training replaced by a stub: what each run is given,
    the paired tables, the plot, a rerun that trains nothing, another schedule refused."""
    seen = []

    def fake_run(job, bar=None, verbose=False):
        cfg, info = job.spec
        seen.append(job.key)
        norm, batch, seed = job.key['norm'], job.key['batch'], job.key['seed']
        assert cfg.model.neck.norm_eval == (norm == 'frozen_bn')
        assert cfg.train_dataloader.batch_size == batch and info['images'] == 8 * 2
        ap = 0.5 - (0.2 if norm == 'bn' and batch == 1 else 0) + 0.01 * seed
        status = 'diverged' if (norm, batch, seed) == ('frozen_bn', 1, 1) else 'ok'
        ap = 0.0 if status == 'diverged' else ap
        return [dict(info, status=status, weights='ema', train_s=1.0, commit='abc1234',
                     threads=1, **{'coco/bbox_mAP': ap, 'coco/bbox_mAP_50': 0.9,
                                   'raw_coco/bbox_mAP': ap - 0.05, 'raw_coco/bbox_mAP_50': 0.9})]

    monkeypatch.setattr(norm_study, 'run_one', fake_run)
    work = tmp_path / 'work'
    args = [CONFIG, '--batches', '1', '2', '--ref-batch', '2', '--iters', '8', '--seeds', '2',
            '--work-dir', str(work)] + pixel_free_coco_flags(tmp_path / 'data')
    report = norm_study.main(args)
    assert len(seen) == 12
    with open(work / 'runs.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {r['commit'] for r in rows} == {'abc1234'}
    by = {(s['norm'], s['batch']): s for s in report['summary']}
    assert by[('bn', 1)]['coco/bbox_mAP'] == pytest.approx(0.305)
    assert by[('gn', 1)]['diff'] == pytest.approx(0.2) and by[('gn', 1)]['diff_ci'] == 0
    assert by[('bn', 1)]['diff_batch'] == pytest.approx(-0.2)
    assert 'diff' not in by[('bn', 2)] and by[('frozen_bn', 1)]['failed'] == 1
    table = (work / 'norm_study.md').read_text()
    assert '| gn | 1 | 16 | 0.002 | 2 | 0 | 0.505 ± 0.007 |' in table
    assert '| +0.200 [+0.200, +0.200] |' in table and 'Δ vs batch 2 (same norm)' in table
    import matplotlib.image
    assert matplotlib.image.imread(str(work / 'ap_vs_batch.png')).shape[0] > 100
    saved = json.loads((work / 'norm_study.json').read_text())
    assert saved['ref_batch'] == 2 and 'threads' in saved and 'commit' in saved

    seen.clear()
    again = norm_study.main(args)  # finished runs are read back, not retrained
    assert seen == [] and again['summary'] == report['summary']
    assert 'norm_study: 12 runs (12 already in' in capsys.readouterr().out
    with pytest.raises(ValueError, match='other settings'):
        norm_study.main(args[:7] + ['16'] + args[8:])  # another schedule, same folder


@pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::UserWarning')
def test_cli_trains_for_real_at_tiny_scale_and_resumes(tmp_path, capsys):
    """The real Runner: BN and GN x 1 and 2 images per step, 1 seed, 2 iterations at batch 2
    on 4 synthetic 256-px images (P7 is 2x2: BN at batch 1 has values to normalise); a rerun
    skips the finished runs."""
    tiny_coco = write_tiny_coco(tmp_path / 'data', size=256)
    work = tmp_path / 'work'
    args = [CONFIG, '--norms', 'bn', 'gn', '--batches', '1', '2', '--ref-batch', '2', '--iters',
            '2', '--work-dir', str(work), '--data-root', f'{tiny_coco.data_root}/',
            '--train-ann', tiny_coco.ann_file, '--val-ann', tiny_coco.ann_file, '--img-prefix',
            tiny_coco.img_prefix, '--classes', 'from-json', '--cfg-options',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False']
    report = norm_study.main(args)
    runs = {(r['norm'], r['batch']): r for r in report['runs']}
    assert set(runs) == {('bn', 1), ('bn', 2), ('gn', 1), ('gn', 2)}
    assert [runs[('bn', b)]['iters'] for b in (1, 2)] == [4, 2]
    assert all(r['status'] == 'ok' and 0 <= r['coco/bbox_mAP'] <= 1 and r['threads'] >= 1
               for r in report['runs'])
    assert (work / 'gn_batch1_seed0' / 'iter_4.pth').is_file()
    for name in ('runs.csv', 'norm_study.md', 'norm_study.json', 'ap_vs_batch.png'):
        assert (work / name).is_file(), name
    capsys.readouterr()
    norm_study.main(args)
    assert 'norm_study: 4 runs (4 already in' in capsys.readouterr().out
