"""The scaling search and sweep (tools/analysis/scaling_search.py, scaling_sweep.py) end to
end at tiny scale: 2 candidates and 2 phis x 2 dimensions, 2 iterations each on the 4-image
synthetic dataset: CSV, plots, resumability, and the dry run's counted FLOPs against the
models that were trained."""
import csv
from pathlib import Path

import matplotlib.image
import pytest
from mmengine.config import Config

from effdet_plugin.studies.scaling import search as scaling_search
from effdet_plugin.studies.scaling import study as scaling_study
from effdet_plugin.studies.scaling import sweep as scaling_sweep

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::UserWarning')


@pytest.fixture(scope='module')
def tiny_config(tiny_coco, tmp_path_factory) -> str:
    """The demo's Lite0 detector and schedule on the tiny data: 128-px crops, batch 2."""
    cfg = Config.fromfile(str(REPO / 'configs/demo/effdet_lite0_nuclei.py'))
    size = 128  # the deepest stride (P7), so phi 0 is the smallest valid input
    load = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True)]
    train = load + [dict(type='Resize', scale=(size, size), keep_ratio=True),
                    dict(type='RandomCrop', crop_size=(size, size), allow_negative_crop=True),
                    dict(type='PackDetInputs')]
    test = [load[0], dict(type='Resize', scale=(size, size), keep_ratio=True), load[1],
            dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                                  'img_shape', 'scale_factor'))]
    for split, pipeline in (('train', train), ('val', test), ('test', test)):
        loader = cfg[f'{split}_dataloader']
        loader.update(num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=tiny_coco.data_root, ann_file=tiny_coco.ann_file,
                              data_prefix=dict(img=tiny_coco.img_prefix), pipeline=pipeline,
                              metainfo=dict(classes=tiny_coco.classes))
    cfg.train_dataloader.batch_size = 2
    ann = f'{tiny_coco.data_root}/{tiny_coco.ann_file}'
    cfg.val_evaluator = cfg.test_evaluator = dict(type='CocoMetric', ann_file=ann, metric='bbox')
    cfg.model.bbox_head.num_classes = len(tiny_coco.classes)
    cfg.model.test_cfg.score_thr = 0.0  # barely trained: keep every box
    path = tmp_path_factory.mktemp('cfg') / 'tiny_lite0.py'
    cfg.dump(str(path))
    return str(path)


def read_csv(path: Path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


COMMON = ['--iters', '2', '--latency-time', '0.05']


def test_search_dry_run_counts_the_models_that_are_trained(tiny_config, tmp_path, capsys):
    triplets = ['--triplets', '1.0,1.0,1.4']  # + the official one: 2 candidates
    dry = scaling_search.main([tiny_config, '--dry-run', *triplets])
    out = capsys.readouterr().out
    assert '| a1.20_b1.10_g1.15 (official) |' in out and 'counted backbone growth' in out
    assert not (tmp_path / 'search').exists()  # nothing trained, nothing written
    by_name = {r['name']: r for r in dry}
    assert set(by_name) == {'a1.20_b1.10_g1.15', 'a1.00_b1.00_g1.40'}
    assert by_name['a1.00_b1.00_g1.40']['shape'] == '176x176'  # 128 x 1.4 to 8 px
    for row in dry:  # rounding makes formula and counted growth differ, but not by much
        assert row['backbone_growth'] == pytest.approx(row['formula_growth'], rel=0.25)

    out_dir = tmp_path / 'search'
    summary = scaling_search.main([tiny_config, *COMMON, *triplets, '--out', str(out_dir)])
    rows = read_csv(out_dir / 'search.csv')
    assert len(rows) == 2 and {r['name'] for r in rows} == set(by_name)
    for row in rows:
        # the trained model (runner.model) counted after training == the dry run's model
        assert int(row['backbone_flops']) == by_name[row['name']]['backbone_flops']
        assert int(row['flops']) == by_name[row['name']]['flops']
        assert int(row['params']) == by_name[row['name']]['params']
        assert 0 <= float(row['coco/bbox_mAP']) <= 1 and float(row['latency_ms']) > 0
    assert len(summary) == 2
    assert (out_dir / 'search.md').read_text().count('**best**') == 1
    assert matplotlib.image.imread(str(out_dir / 'search.png')).ndim == 3


def test_sweep_writes_csv_plots_gains_and_resumes(tiny_config, tmp_path, capsys, monkeypatch):
    trained = []
    real_run = scaling_study.train

    def counting_run(cfg, work_dir, *a, **k):
        trained.append(Path(work_dir).name)
        return real_run(cfg, work_dir, *a, **k)

    monkeypatch.setattr(scaling_study, 'train', counting_run)
    out_dir = tmp_path / 'sweep'
    args = [tiny_config, '--phis', '0', '1', '--dims', 'compound', 'width', *COMMON,
            '--min-gain', '1000', '--out', str(out_dir)]
    summary = scaling_sweep.main(args)
    # phi 0 is the config's model for every dimension: trained once
    assert trained == ['compound_phi0_seed0', 'compound_phi1_seed0', 'width_phi1_seed0']
    rows = read_csv(out_dir / 'sweep.csv')
    assert [(r['dim'], float(r['phi'])) for r in rows] == [
        ('compound', 0), ('compound', 1), ('width', 0), ('width', 1)]
    assert rows[2]['same_as'] == 'compound_phi0' and rows[2]['flops'] == rows[0]['flops']
    flops = {(r['dim'], float(r['phi'])): int(r['flops']) for r in rows}
    assert flops[('compound', 1)] > flops[('width', 1)] > flops[('width', 0)]
    for name in ('ap_vs_flops.png', 'ap_vs_latency.png'):
        image = matplotlib.image.imread(str(out_dir / name))
        assert image.shape[0] > 100 and image.std() > 0  # a real, non-blank picture
    out = capsys.readouterr().out
    assert 'falls below 1000 after phi 0' in out  # no AP gain can reach 1000 per GFLOP
    assert 'Marginal gains' in (out_dir / 'sweep.md').read_text()
    assert [(r['dim'], r['phi']) for r in summary] == [
        ('compound', 0), ('compound', 1), ('width', 0), ('width', 1)]  # plan order

    # rerun with one more phi of one dimension: the finished runs are not retrained
    trained.clear()
    again = scaling_sweep.main([tiny_config, '--phis', '0', '0.5', '1', '--dims', 'compound',
                                *args[7:]])
    assert trained == ['compound_phi0.5_seed0']
    assert [r['phi'] for r in again] == [0, 0.5, 1] and len(read_csv(out_dir / 'sweep.csv')) == 5
    assert '3 runs (2 already in' in capsys.readouterr().out
    with pytest.raises(ValueError, match='other settings \\(iters'):
        scaling_sweep.main([tiny_config, '--phis', '0', '--iters', '3', '--out', str(out_dir)])

    # --retime: no training, every finished model timed again in one interleaved pass
    trained.clear()
    before = {r['name']: r['latency_ms'] for r in read_csv(out_dir / 'sweep.csv')}
    scaling_sweep.main(args + ['--retime'])
    assert trained == []
    after = {r['name']: r['latency_ms'] for r in read_csv(out_dir / 'sweep.csv')}
    assert set(after) == set(before) and after != before and all(float(v) > 0 for v in
                                                                  after.values())
    assert after['width_phi0'] == after['compound_phi0']  # one model, timed once
    with pytest.raises(ValueError, match='width_phi2 not trained yet'):
        scaling_sweep.main([*args[:3], '2', *args[4:], '--retime'])
