"""The transfer evaluation (tools/analysis/transfer_eval.py): schedule rescaling, the four
starting points, the table."""
import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from effdet_plugin.studies import runner
from effdet_plugin.studies.transfer import report as transfer_report
from effdet_plugin.studies.transfer import starting_points
from effdet_plugin.studies.transfer import study as transfer_eval
from tests.data_helpers import pixel_free_coco_flags

REPO = Path(__file__).resolve().parents[2]
CONFIG = 'configs/medical/effdet-lite0_nuclei.py'
pytestmark = pytest.mark.usefixtures('repo_cwd')


def test_rescale_schedule_keeps_warmup_and_cosine_proportions():
    cfg = Config.fromfile(CONFIG)
    assert cfg.train_cfg.max_iters == 300
    runner.rescale_schedule(cfg, 100)
    warmup, cosine = cfg.param_scheduler
    assert (warmup.begin, warmup.end) == (0, 10)
    assert (cosine.begin, cosine.end, cosine.T_max) == (10, 100, 90)
    assert cfg.train_cfg.max_iters == 100
    assert cfg.default_hooks.checkpoint.interval == 100
    runner.rescale_schedule(cfg, 2)  # degenerate but valid: 1 warm-up + 1 cosine step
    assert [(s.begin, s.end) for s in cfg.param_scheduler] == [(0, 1), (1, 2)]


def test_rescale_schedule_rejects_epoch_based_configs():
    cfg = Config.fromfile('configs/effdet_lite0_coco.py')
    with pytest.raises(ValueError, match='iteration-based'):
        runner.rescale_schedule(cfg, 10)


def test_mode_configs_change_only_the_initialisation(tmp_path):
    cfg = Config.fromfile(CONFIG)
    imagenet = starting_points.mode_config(cfg, 'imagenet', str(tmp_path))
    scratch = starting_points.mode_config(cfg, 'scratch', str(tmp_path))
    frozen = starting_points.mode_config(cfg, 'frozen', str(tmp_path))
    coco = starting_points.mode_config(cfg, 'coco', str(tmp_path), 'coco.pth')
    assert imagenet.model.backbone.init_cfg.type == 'Pretrained'
    assert 'init_cfg' not in scratch.model.backbone and scratch.model.backbone.frozen_stages == -1
    assert frozen.model.backbone.frozen_stages == max(cfg.model.backbone.out_indices)
    assert coco.load_from == 'coco.pth' and imagenet.load_from is None
    assert len({c.work_dir for c in (imagenet, scratch, frozen, coco)}) == 4
    for other in (imagenet, scratch, frozen, coco):
        assert other.train_dataloader == cfg.train_dataloader
        assert other.param_scheduler == cfg.param_scheduler
    with pytest.raises(ValueError, match='checkpoint-coco'):
        starting_points.mode_config(cfg, 'coco', str(tmp_path))


def test_frozen_run_trains_no_backbone_parameter(tmp_path):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = starting_points.mode_config(Config.fromfile(CONFIG), 'frozen', str(tmp_path))
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.train()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not any(m.training for layer in model.backbone.layers for m in layer.modules())
    assert all(p.requires_grad for p in model.neck.parameters())


def test_expected_metrics_follow_the_config_evaluators():
    assert starting_points.expected_metrics(Config.fromfile(CONFIG)) == [
        'coco/bbox_mAP', 'coco/bbox_mAP_50']
    joint = Config.fromfile('configs/medical/effdet-lite0-detseg_nuclei.py')
    assert starting_points.expected_metrics(joint) == [
        'coco/bbox_mAP', 'coco/bbox_mAP_50', 'semseg/mIoU']
    masks = Config.fromfile('configs/medical/mask-rcnn_effnet-lite0_bifpn-p2_nuclei.py')
    assert starting_points.expected_metrics(masks)[2:] == ['coco/segm_mAP', 'coco/segm_mAP_50']


def test_row_labels_say_exactly_what_is_frozen(tmp_path):
    cfg = Config.fromfile(CONFIG)
    labels = {mode: starting_points.describe(
        starting_points.mode_config(cfg, mode, str(tmp_path), 'coco.pth'), mode)
        for mode in starting_points.MODES}
    assert cfg.model.backbone.frozen_stages == 1
    assert labels['imagenet'] == 'ImageNet backbone; stem + stage 1 frozen, the rest trained'
    assert labels['scratch'] == 'random init; nothing frozen, all trained'
    assert labels['frozen'] == ('ImageNet backbone; stem + stages 1-7 frozen (whole backbone), '
                                'neck + heads trained')
    assert labels['coco'].startswith('COCO detector; stem + stage 1 frozen')


def test_subsets_are_nested_deterministic_and_keep_their_annotations(tmp_path):
    images = [dict(id=i, file_name=f'{i}.png', width=8, height=8) for i in range(1, 21)]
    anns = [dict(id=10 * i + j, image_id=i, bbox=[0, 0, 2, 2], area=4, category_id=1,
                 iscrowd=0) for i in range(1, 21) for j in range(i % 3)]
    (tmp_path / 'ann.json').write_text(json.dumps(
        dict(images=images, annotations=anns, categories=[dict(id=1, name='x')])))
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='RepeatDataset', times=2, dataset=dict(data_root=str(tmp_path),
                                                     ann_file='ann.json')))))
    first = starting_points.write_subsets(cfg, [0.25, 0.5, 1.0], str(tmp_path / 'a'))
    again = starting_points.write_subsets(cfg, [0.5, 0.25], str(tmp_path / 'b'))
    assert [first[f][1] for f in (0.25, 0.5, 1.0)] == [5, 10, 20]
    assert first[1.0][0] == str(tmp_path / 'ann.json')  # the whole set: the config's file

    def content(path):
        return json.loads(Path(path).read_text())

    quarter, half = content(first[0.25][0]), content(first[0.5][0])
    assert quarter == content(again[0.25][0]) and half == content(again[0.5][0])
    ids = {im['id'] for im in quarter['images']}
    assert ids < {im['id'] for im in half['images']}
    assert ids != set(range(1, 6))  # drawn at random, not the first ones
    assert quarter['annotations'] == [a for a in anns if a['image_id'] in ids]
    assert quarter['categories'] == [dict(id=1, name='x')]
    other_seed = starting_points.write_subsets(cfg, [0.25], str(tmp_path / 'c'), seed=1)
    assert content(other_seed[0.25][0]) != quarter


def _rows(values: dict, iters=(50, 100)):
    """Synthetic runs.csv rows: values[(mode, seed)] = AP at the last iteration."""
    rows = []
    for (mode, seed), ap in values.items():
        for it in iters:
            rows.append(dict(mode=mode, seed=seed, fraction=0.5, train_images=10, iter=it,
                             weights='ema', label=f'{mode} label', train_s=12.0,
                             **{'coco/bbox_mAP': ap * it / iters[-1],
                                'coco/bbox_mAP_50': 2 * ap * it / iters[-1]}))
        rows.append(dict(rows[-1], weights='raw', **{'coco/bbox_mAP': 0.0}))
    return rows


def test_summary_pairs_seeds_with_scratch_and_gives_a_t_interval():
    values = {('scratch', 0): 0.30, ('scratch', 1): 0.40, ('scratch', 2): 0.20,
              ('imagenet', 0): 0.40, ('imagenet', 1): 0.60, ('imagenet', 2): 0.50}
    summary = transfer_report.summarise(_rows(values), 'coco/bbox_mAP', 'ema')
    imagenet = next(s for s in summary if s['mode'] == 'imagenet')
    # paired differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t(0.975, 2) = 4.303
    assert imagenet['iter'] == 100 and imagenet['n'] == 3 and imagenet['pairs'] == 3
    assert imagenet['diff'] == pytest.approx(0.2)
    assert imagenet['diff_ci'] == pytest.approx(4.3027 * 0.1 / 3**0.5, rel=1e-4)
    assert imagenet['coco/bbox_mAP'] == pytest.approx(0.5)
    assert imagenet['coco/bbox_mAP_std'] == pytest.approx(0.1)
    table = transfer_report.summary_table(summary, 'coco/bbox_mAP', 'bbox AP').splitlines()
    assert table[0].startswith('| fraction | iters | mode | what is trained | seeds | bbox AP')
    assert '| 0.5 | 100 | imagenet | imagenet label | 3 | 0.500 ± 0.100 |' in table[3]
    assert table[3].endswith('| +0.200 [-0.048, +0.448] |')
    assert table[2].endswith('| - |')  # scratch against itself
    at_50 = transfer_report.summarise(_rows(values), 'coco/bbox_mAP', 'ema', [50])
    assert {s['iter'] for s in at_50} == {50}
    runs = transfer_report.runs_table(_rows(values), 'raw').splitlines()
    assert len(runs) == 2 + 6 and '| 0.000 |' in runs[2]


def test_seeds_fractions_curves_tables_and_plots_with_a_stub_trainer(tmp_path, monkeypatch,
                                                                     capsys):
    """2 seeds x 2 fractions x (imagenet, scratch) with the training replaced by a stub that
    records what each run was given: same subset file for every mode and seed, the CSV holds
    every evaluation, plots and the paired-difference table are written, a rerun trains
    nothing. (The real Runner: the slow tiny-scale test below.)"""
    seen = []

    def fake_run(cfg, bar=None):
        mode = Path(cfg.work_dir).name
        seed, ann = cfg.randomness.seed, cfg.train_dataloader.dataset.ann_file
        seen.append((mode, seed, ann, cfg.train_cfg.val_interval, cfg.train_cfg.max_iters,
                     'init_cfg' in cfg.model.backbone))
        ap = 0.3 + 0.1 * (mode == 'imagenet') + 0.05 * seed + 0.1 * ('fraction1_' in cfg.work_dir)
        return [dict(iter=it, weights=w, train_s=1.5, **{'coco/bbox_mAP': ap * it / 4,
                                                         'coco/bbox_mAP_50': 0.9})
                for it, w in ((2, 'ema'), (4, 'ema'), (4, 'raw'))]

    monkeypatch.setattr(transfer_eval, 'run_one', fake_run)
    work = tmp_path / 'work'
    args = [CONFIG, '--iters', '4', '--eval-interval', '2', '--seeds', '2', '--fractions',
            '0.5', '1.0', '--modes', 'imagenet', 'scratch', '--work-dir', str(work)]
    args += pixel_free_coco_flags(tmp_path / 'data')
    report = transfer_eval.main(args)

    assert len(seen) == 8 and {s[3:5] for s in seen} == {(2, 4)}
    assert {s[0]: s[5] for s in seen} == {'imagenet': True, 'scratch': False}
    half = {ann for mode, seed, ann, *_ in seen if ann.endswith('train_fraction0.5_seed0.json')}
    assert len(half) == 1 and Path(next(iter(half))).parent == work / 'subsets'
    assert len(json.loads(Path(next(iter(half))).read_text())['images']) == 4
    for seed in (0, 1):  # both modes of a seed train on the same files, in the same order
        assert [s[2] for s in seen if s[1] == seed and s[0] == 'imagenet'] == [
            s[2] for s in seen if s[1] == seed and s[0] == 'scratch']
    assert str(tmp_path / 'data' / 'annotations' / 'train.json') in {s[2] for s in seen}

    with open(work / 'runs.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 * 3
    assert {r['label'] for r in rows if r['mode'] == 'imagenet'} == {
        'ImageNet backbone; stem + stage 1 frozen, the rest trained'}
    assert {(r['fraction'], r['train_images']) for r in rows} == {('0.5', '4'), ('1.0', '8')}
    made_by = runner.provenance()  # which code and how many threads made each run
    assert {(r['commit'], r['threads']) for r in rows} == {
        (made_by['commit'], str(made_by['threads']))}
    import matplotlib.image
    for name in ('ap_vs_iters.png', 'ap_vs_fraction.png'):
        assert matplotlib.image.imread(str(work / name)).shape[0] > 100
    imagenet = [s for s in report['summary'] if s['mode'] == 'imagenet']
    assert [(s['fraction'], s['iter'], s['n'], s['pairs']) for s in imagenet] == [
        (0.5, 4, 2, 2), (1.0, 4, 2, 2)]
    assert imagenet[0]['diff'] == pytest.approx(0.1) and imagenet[0]['diff_ci'] == 0
    table = (work / 'transfer_eval.md').read_text()
    assert 'scores of EMA weights' in table and 'Δ bbox AP vs scratch [95% CI]' in table
    assert '| +0.100 [+0.100, +0.100] |' in table
    assert f"| {made_by['commit']} | {made_by['threads']} |" in table
    out = capsys.readouterr().out
    assert '[8/8] scratch (random init; nothing frozen, all trained), fraction 1 (8 images)' \
        in out and 'Summary' in out

    seen.clear()
    again = transfer_eval.main(args)  # finished runs are read back, not retrained
    assert seen == [] and again['summary'] == report['summary']
    assert 'transfer_eval: 8 runs (8 already in' in capsys.readouterr().out
    more = transfer_eval.main(args[:6] + ['3'] + args[7:] + ['--report-only'])
    assert seen == [] and more['summary'] == report['summary']  # seed 2 not trained
    with pytest.raises(ValueError, match='other settings'):
        transfer_eval.main(args[:2] + ['6'] + args[3:])  # another schedule, same folder


@pytest.fixture(scope='module')
def tiny_nuclei(tmp_path_factory):
    """A small nuclei conversion, the real ImageNet Lite0 weights converted (a clean checkout
    has no checkpoints/) and the flags for 128-px crops of batch 2 on it."""
    if importlib.util.find_spec('stardist') is None:
        pytest.skip('stardist (nuclei demo data) is not installed')
    from effdet_plugin.checkpoint import convert_lite_package
    from effdet_plugin.datasets.nuclei import convert_nuclei
    root = tmp_path_factory.mktemp('transfer')
    data = root / 'nuclei'
    convert_nuclei(data, upscale=1.0, tile_size=128, overlap=0)
    imagenet = root / 'lite0_imagenet.pth'
    convert_lite_package(str(imagenet))
    options = ['train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
               'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
               'val_dataloader.persistent_workers=False',
               'train_dataloader.dataset.pipeline.4.crop_size=(128,128)',
               f'model.backbone.init_cfg.checkpoint={imagenet}']
    data_flags = ['--data-root', f'{data}/', '--train-ann', 'annotations/instances_train.json',
                  '--val-ann', 'annotations/instances_val.json']
    return data, data_flags + ['--cfg-options'] + options


@pytest.mark.slow
@pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::UserWarning')
def test_cli_seeds_and_fractions_train_for_real_at_tiny_scale(tiny_nuclei, tmp_path):
    """The real Runner: 2 seeds x 2 fractions x (imagenet, scratch), 2 iterations evaluated
    after each; EMA evaluations during training, the raw weights once after it."""
    data, flags = tiny_nuclei
    work = tmp_path / 'work'
    report = transfer_eval.main([CONFIG, '--iters', '2', '--eval-interval', '1', '--seeds', '2',
                                 '--fractions', '0.5', '1.0', '--modes', 'imagenet', 'scratch',
                                 '--work-dir', str(work)] + flags)
    runs = {(r['mode'], r['fraction'], r['seed']) for r in report['runs']}
    assert len(runs) == 8
    for run in runs:
        evals = [(r['iter'], r['weights']) for r in report['runs']
                 if (r['mode'], r['fraction'], r['seed']) == run]
        assert evals == [(1, 'ema'), (2, 'ema'), (2, 'raw')]
    full = json.loads((data / 'annotations' / 'instances_train.json').read_text())
    assert {r['train_images'] for r in report['runs'] if r['fraction'] == 0.5} == {
        round(len(full['images']) / 2)}
    assert all(0 <= r['coco/bbox_mAP'] <= 1 for r in report['runs'])
    assert (work / 'ap_vs_iters.png').is_file() and (work / 'ap_vs_fraction.png').is_file()


@pytest.mark.slow
@pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::UserWarning')
def test_cli_runs_all_four_starting_points_at_tiny_scale(tiny_nuclei, tmp_path):
    """2 iterations per run. The 'COCO' checkpoint is a detector of the same architecture with
    80 classes: everything loads but the class logits, whose shapes differ, as with a real
    COCO checkpoint."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    coco_cfg = Config.fromfile(CONFIG).model
    coco_cfg.bbox_head.num_classes = 80
    coco_cfg.backbone.init_cfg = None
    checkpoint = tmp_path / 'coco.pth'
    torch.save(dict(state_dict=MODELS.build(coco_cfg).state_dict()), checkpoint)
    work = tmp_path / 'work'
    report = transfer_eval.main([CONFIG, '--iters', '2', '--work-dir', str(work),
                                 '--checkpoint-coco', str(checkpoint)] + tiny_nuclei[1])
    assert report['modes'] == ['imagenet', 'scratch', 'frozen', 'coco']
    final = [r for r in report['runs'] if r['weights'] == 'ema']
    assert [r['mode'] for r in final] == report['modes']
    assert all(0 <= r['coco/bbox_mAP_50'] <= 1 and r['train_s'] > 0 for r in final)
    assert (work / 'fraction1_seed0' / 'frozen' / 'iter_2.pth').is_file()
    assert '| coco | COCO detector; stem + stage 1 frozen' in (
        work / 'transfer_eval.md').read_text()


@pytest.mark.slow
@pytest.mark.timeout(2400)  # 4 trainings of 100 iterations
@pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::UserWarning')
def test_nuclei_comparison_learns_and_reports_a_paired_interval(tmp_path, run_tool_ok):
    """data/nuclei, 2 seeds x 100 iterations of imagenet and scratch (about 10 min on 2 cores):
    both learn, and the paired difference comes with a finite interval. Which mode wins, and
    by how much, is the README's measured table, not an assertion. The data and the ImageNet
    weights are made as `make demo` makes them, where they are missing."""
    if not (REPO / 'data' / 'nuclei' / 'annotations' / 'instances_val.json').is_file():
        run_tool_ok('tools/dataset_converters/nuclei_to_coco.py', '--out-dir', 'data/nuclei')
    if not (REPO / 'checkpoints' / 'effnet_lite0_imagenet.pth').is_file():
        run_tool_ok('tools/convert_weights.py', '--lite0-package',
                    'checkpoints/effnet_lite0_imagenet.pth')
    report = transfer_eval.main([CONFIG, '--iters', '100', '--eval-interval', '50', '--seeds',
                                 '2', '--work-dir', str(tmp_path), '--modes', 'imagenet',
                                 'scratch'])
    by_mode = {s['mode']: s for s in report['summary']}
    assert by_mode['imagenet']['coco/bbox_mAP'] > 0.1 and by_mode['scratch']['coco/bbox_mAP'] > 0
    assert by_mode['imagenet']['pairs'] == 2 and 0 <= by_mode['imagenet']['diff_ci'] < 1
