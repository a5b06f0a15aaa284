"""tools/analysis/transfer_eval.py: schedule rescaling, the four starting points, the table."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from tools.analysis import transfer_eval

REPO = Path(__file__).resolve().parents[2]
CONFIG = 'configs/medical/effdet-lite0_nuclei.py'


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)


def test_rescale_schedule_keeps_warmup_and_cosine_proportions():
    cfg = Config.fromfile(CONFIG)
    assert cfg.train_cfg.max_iters == 300
    transfer_eval.rescale_schedule(cfg, 100)
    warmup, cosine = cfg.param_scheduler
    assert (warmup.begin, warmup.end) == (0, 10)
    assert (cosine.begin, cosine.end, cosine.T_max) == (10, 100, 90)
    assert cfg.train_cfg.max_iters == 100 and cfg.train_cfg.val_interval > 100
    assert cfg.default_hooks.checkpoint.interval == 100
    transfer_eval.rescale_schedule(cfg, 2)  # degenerate but valid: 1 warm-up + 1 cosine step
    assert [(s.begin, s.end) for s in cfg.param_scheduler] == [(0, 1), (1, 2)]


def test_rescale_schedule_rejects_epoch_based_configs():
    cfg = Config.fromfile('configs/effdet_lite0_coco.py')
    with pytest.raises(ValueError, match='iteration-based'):
        transfer_eval.rescale_schedule(cfg, 10)


def test_mode_configs_change_only_the_initialisation(tmp_path):
    cfg = Config.fromfile(CONFIG)
    imagenet = transfer_eval.mode_config(cfg, 'imagenet', str(tmp_path))
    scratch = transfer_eval.mode_config(cfg, 'scratch', str(tmp_path))
    frozen = transfer_eval.mode_config(cfg, 'frozen', str(tmp_path))
    coco = transfer_eval.mode_config(cfg, 'coco', str(tmp_path), 'coco.pth')
    assert imagenet.model.backbone.init_cfg.type == 'Pretrained'
    assert 'init_cfg' not in scratch.model.backbone and scratch.model.backbone.frozen_stages == -1
    assert frozen.model.backbone.frozen_stages == max(cfg.model.backbone.out_indices)
    assert coco.load_from == 'coco.pth' and imagenet.load_from is None
    assert len({c.work_dir for c in (imagenet, scratch, frozen, coco)}) == 4
    for other in (imagenet, scratch, frozen, coco):
        assert other.train_dataloader == cfg.train_dataloader
        assert other.param_scheduler == cfg.param_scheduler
    with pytest.raises(ValueError, match='checkpoint-coco'):
        transfer_eval.mode_config(cfg, 'coco', str(tmp_path))


def test_frozen_run_trains_no_backbone_parameter(tmp_path):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = transfer_eval.mode_config(Config.fromfile(CONFIG), 'frozen', str(tmp_path))
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.train()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not any(m.training for layer in model.backbone.layers for m in layer.modules())
    assert all(p.requires_grad for p in model.neck.parameters())


def test_expected_metrics_follow_the_config_evaluators():
    assert transfer_eval.expected_metrics(Config.fromfile(CONFIG)) == [
        'coco/bbox_mAP', 'coco/bbox_mAP_50']
    joint = Config.fromfile('configs/medical/effdet-lite0-detseg_nuclei.py')
    assert transfer_eval.expected_metrics(joint) == [
        'coco/bbox_mAP', 'coco/bbox_mAP_50', 'semseg/mIoU']
    masks = Config.fromfile('configs/medical/mask-rcnn_effnet-lite0_bifpn-p2_nuclei.py')
    assert transfer_eval.expected_metrics(masks)[2:] == ['coco/segm_mAP', 'coco/segm_mAP_50']


def test_table_lists_the_metrics_the_runs_report():
    results = dict(
        imagenet={'coco/bbox_mAP': 0.5, 'coco/bbox_mAP_50': 0.8, 'coco/segm_mAP_50': 0.7,
                  'train_s': 12.3},
        scratch={'coco/bbox_mAP': 0.1, 'coco/bbox_mAP_50': 0.2, 'train_s': 11.0})
    table = transfer_eval.format_table(results, 50).splitlines()
    assert table[0] == '| run | init | bbox AP | bbox AP50 | segm AP50 | train s | iters |'
    assert table[2].startswith('| imagenet | ImageNet backbone, all trained | 0.500 | 0.800 |')
    assert table[3].split(' | ')[4] == '-'  # no segm result for that run


@pytest.mark.skipif(importlib.util.find_spec('stardist') is None,
                    reason='stardist (nuclei demo data) is not installed')
@pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::UserWarning')
def test_cli_runs_all_four_starting_points_at_tiny_scale(tmp_path, capsys):
    """2 iterations of batch 2 per run on a small nuclei conversion. The 'COCO' checkpoint is
    a detector of the same architecture with 80 classes: everything loads but the class
    logits, whose shapes differ, as with a real COCO checkpoint."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from effdet_plugin.datasets.nuclei import convert_nuclei
    register_all_modules()
    data = tmp_path / 'nuclei'
    convert_nuclei(data, upscale=1.0, tile_size=128, overlap=0)
    coco_cfg = Config.fromfile(CONFIG).model
    coco_cfg.bbox_head.num_classes = 80
    coco_cfg.backbone.init_cfg = None
    checkpoint = tmp_path / 'coco.pth'
    torch.save(dict(state_dict=MODELS.build(coco_cfg).state_dict()), checkpoint)

    options = [f'{split}_dataloader.dataset.data_root={data}/' for split in ('train', 'val')]
    options += [f'val_evaluator.ann_file={data}/annotations/instances_val.json',
                'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
                'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
                'val_dataloader.persistent_workers=False', 'log_level=WARNING',
                'train_dataloader.dataset.pipeline.3.scale=(128,128)',
                'train_dataloader.dataset.pipeline.4.crop_size=(128,128)',
                'model.test_cfg.score_thr=0.0']  # untrained: keep every box
    # The real ImageNet Lite0 weights, converted here: a clean checkout has no checkpoints/.
    from effdet_plugin.converters import convert_lite_package
    imagenet = tmp_path / 'lite0_imagenet.pth'
    convert_lite_package(str(imagenet))
    options.append(f'model.backbone.init_cfg.checkpoint={imagenet}')
    work = tmp_path / 'work'
    torch.manual_seed(0)
    results = transfer_eval.main([CONFIG, '--iters', '2', '--work-dir', str(work),
                                  '--checkpoint-coco', str(checkpoint), '--cfg-options',
                                  *options])
    assert list(results) == ['imagenet', 'scratch', 'frozen', 'coco']
    for res in results.values():
        assert 0 <= res['coco/bbox_mAP_50'] <= 1 and res['train_s'] > 0
    assert (work / 'frozen' / 'iter_2.pth').is_file()
    table = (work / 'transfer_eval.md').read_text()
    assert table.count('\n| ') == 5 and '| coco | COCO detector checkpoint' in table
    saved = json.loads((work / 'transfer_eval.json').read_text())
    assert saved['iters'] == 2 and set(saved['results']) == set(results)
    assert '| bbox AP | bbox AP50 |' in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::UserWarning')
def test_imagenet_beats_scratch_on_nuclei(tmp_path):
    """The real comparison on data/nuclei, 100 iterations (about 3 min on a 2-core CPU).

    Measured bbox AP (AP50): ImageNet 0.180 (0.686) vs scratch 0.151 (0.540) from the CLI,
    0.240 (0.660) vs 0.162 (0.635) and 0.239 (0.728) vs 0.223 (0.662) in this test; CPU runs in different processes are not
    bit-identical, and AP50 margins are small, so the test compares AP. The advantage is an
    early one: by 300 iterations scratch catches up on this data (README, transfer table)."""
    if not (REPO / 'data' / 'nuclei' / 'annotations' / 'instances_val.json').is_file():
        pytest.skip('data/nuclei is missing: run tools/dataset_converters/nuclei_to_coco.py')
    results = transfer_eval.main([CONFIG, '--iters', '100', '--work-dir', str(tmp_path),
                                  '--modes', 'imagenet', 'scratch'])
    assert results['imagenet']['coco/bbox_mAP'] > results['scratch']['coco/bbox_mAP']
