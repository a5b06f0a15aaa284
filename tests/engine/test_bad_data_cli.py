"""Bad annotation files and images through tools/train.py and tools/test.py: what stops
(exit 1, the file and the problem named, before the model is built) and what is logged."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from effdet_plugin.checkpoint import read_checkpoint
from tests.conftest import write_tiny_coco


@pytest.fixture
def data(tmp_path):
    """A fresh tiny COCO dataset per test (its JSON gets edited)."""
    return write_tiny_coco(tmp_path / 'data')


def _edit_json(data, edit) -> dict:
    path = Path(data.data_root) / data.ann_file
    coco = json.loads(path.read_text())
    edit(coco)
    path.write_text(json.dumps(coco))
    return coco


def _config(tiny_det_cfg, data, tmp_path, robust: bool = False, **loader_kwargs) -> Path:
    cfg = tiny_det_cfg()
    for loader in (cfg.train_dataloader, cfg.test_dataloader):
        loader.dataset.update(data_root=data.data_root)
        if robust:
            loader.dataset.type = 'RobustCocoDataset'
        loader.dataset.pipeline[0].update(loader_kwargs)
    cfg.test_evaluator.ann_file = f'{data.data_root}/{data.ann_file}'
    path = tmp_path / 'tiny.py'
    cfg.dump(str(path))
    return path


def _assert_stopped_early(proc, tmp_path, *words):
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert all(w in proc.stderr for w in words), proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    assert not (tmp_path / 'work_dir').exists()  # before the Runner (and the model)


def test_class_names_differ_from_categories(tiny_det_cfg, data, tmp_path, run_tool):
    _edit_json(data, lambda c: c['categories'][0].update(name='cat'))
    cfg_file = _config(tiny_det_cfg, data, tmp_path)
    ann = f'{data.data_root}/{data.ann_file}'
    both_lists = ["config classes ['white_box', 'red_box']", "file categories ['cat', 'red_box']",
                  "not in the file: ['white_box']", '--classes from-json', ann]
    proc = run_tool('tools/train.py', cfg_file, '--work-dir', tmp_path / 'work_dir')
    _assert_stopped_early(proc, tmp_path, 'train_dataloader.dataset', *both_lists)
    ckpt = tmp_path / 'any.pth'
    torch.save({}, ckpt)
    proc = run_tool('tools/test.py', cfg_file, ckpt, '--work-dir', tmp_path / 'work_dir')
    _assert_stopped_early(proc, tmp_path, 'test_dataloader.dataset', *both_lists)
    assert 'IndexError' not in proc.stderr


def test_classes_from_json_is_the_opt_in(tiny_det_cfg, data, tmp_path, run_tool):
    _edit_json(data, lambda c: c['categories'][0].update(name='cat'))
    cfg_file = _config(tiny_det_cfg, data, tmp_path)
    work_dir = tmp_path / 'work_dir'
    proc = run_tool('tools/train.py', cfg_file, '--work-dir', work_dir, '--classes', 'from-json')
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = read_checkpoint(str(work_dir / 'epoch_1.pth'))
    assert ckpt['meta']['dataset_meta']['classes'] == ('cat', 'red_box')


@pytest.mark.parametrize('case', ['truncated', 'no_images', 'no_annotations', 'not_coco'])
def test_unusable_annotation_file_stops_before_the_model(case, tiny_det_cfg, data, tmp_path,
                                                         run_tool):
    path = Path(data.data_root) / data.ann_file
    if case == 'truncated':
        path.write_text(path.read_text()[:-200])
        words = ['is not valid JSON', 'truncated or corrupt']
    elif case == 'not_coco':
        path.write_text(json.dumps([1, 2]))
        words = ["is no COCO file: expected an object with an 'images' list"]
    elif case == 'no_images':
        _edit_json(data, lambda c: c.update(images=[], annotations=[]))
        words = ['lists no images: the dataset is empty']
    else:
        _edit_json(data, lambda c: c.update(annotations=[]))
        words = ['has 4 images but no usable annotation', 'training would run on nothing']
    cfg_file = _config(tiny_det_cfg, data, tmp_path)
    proc = run_tool('tools/train.py', cfg_file, '--work-dir', tmp_path / 'work_dir')
    _assert_stopped_early(proc, tmp_path, f"annotation file '{path}", *words)


def _log_text(work_dir: Path) -> str:
    return next(work_dir.glob('*/*.log')).read_text()


def test_dropped_annotations_and_skipped_images_are_logged(tiny_det_cfg, data, tmp_path,
                                                           run_tool):
    """Unknown category ids and images without annotations: counted in the run's log; a
    missing image skipped by mmcv's ignore_empty: named with a count."""

    def edit(coco):
        for ann in coco['annotations']:
            if ann['image_id'] == 2:
                ann['category_id'] = 9  # not in categories
    coco = _edit_json(data, edit)
    lost = sum(a['image_id'] == 2 for a in coco['annotations'])
    missing = Path(data.data_root) / 'images' / '0003.png'
    missing.unlink()
    cfg_file = _config(tiny_det_cfg, data, tmp_path, robust=True, ignore_empty=True)
    work_dir = tmp_path / 'work_dir'
    proc = run_tool('tools/train.py', cfg_file, '--work-dir', work_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = _log_text(work_dir)
    ann = f'{data.data_root}/{data.ann_file}'
    assert f'RobustCocoDataset({ann}, training)' in log
    assert (f'{lost} annotation(s) with a category id not in categories dropped (id: count '
            f'9: {lost})') in log
    assert '1/4 image(s) without any usable annotation' in log
    assert f"skipping sample: image '{missing}' is missing" in log
    assert '1 skipped so far' in log
    assert (work_dir / 'epoch_1.pth').is_file()


def _train_demo(run_tool, data, work_dir, *options):
    """tools/train.py with configs/demo/effdet_lite0_nuclei.py on ``data`` for 2 iterations."""
    ann = f'{data.data_root}/{data.ann_file}'
    options = ['model.backbone.init_cfg=None', 'model.bbox_head.num_classes=2',
               'train_cfg.max_iters=2', *options]
    for split in ('train', 'val'):
        options += [f'{split}_dataloader.dataset.data_root={data.data_root}',
                    f'{split}_dataloader.dataset.ann_file={data.ann_file}',
                    f'{split}_dataloader.dataset.data_prefix.img={data.img_prefix}',
                    f'{split}_dataloader.dataset.metainfo.classes={list(data.classes)}',
                    f'{split}_dataloader.num_workers=0',
                    f'{split}_dataloader.persistent_workers=False']
    options += [f'val_evaluator.ann_file={ann}', 'train_dataloader.batch_size=2']
    return run_tool('tools/train.py', 'configs/demo/effdet_lite0_nuclei.py', '--work-dir',
                    work_dir, '--cfg-options', *options)


def test_16bit_png_is_refused_by_the_demo_loader(data, tmp_path, run_tool):
    """configs/demo reads images with mmcv's LoadImageFromFile: a 16-bit PNG stops the run
    with the loader to use instead of being cut to 8 bits."""
    ramp = np.linspace(0, 4095, data.size * data.size).reshape(data.size, data.size)
    for png in sorted((Path(data.data_root) / 'images').glob('*.png')):
        cv2.imwrite(str(png), ramp.astype(np.uint16))
    work_dir = tmp_path / 'work_dir'
    proc = _train_demo(run_tool, data, work_dir)
    _assert_stopped_early(proc, tmp_path, 'error: train_dataloader.dataset: ',
                          f"{data.data_root}/{data.img_prefix}0001.png' stores 16-bit values",
                          '(3 more image(s) of the file too)',
                          "dict(type='LoadMedicalImageFromFile'")


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_missing_image_stops_before_the_model(tool, tiny_det_cfg, data, tmp_path, run_tool):
    """mmcv's LoadImageFromFile ended in a FileNotFoundError traceback at the first missing
    image: now one error line names it, the annotation file and the keys to check."""
    missing = Path(data.data_root) / data.img_prefix / '0003.png'
    missing.unlink()
    cfg_file = _config(tiny_det_cfg, data, tmp_path)
    args = ['--work-dir', tmp_path / 'work_dir']
    if tool == 'test':
        ckpt = tmp_path / 'any.pth'
        torch.save({}, ckpt)
        args.insert(0, ckpt)
    proc = run_tool(f'tools/{tool}.py', cfg_file, *args)
    ann = f'{data.data_root}/{data.ann_file}'
    key = 'train_dataloader' if tool == 'train' else 'test_dataloader'
    _assert_stopped_early(proc, tmp_path, f"error: {key}.dataset: 1 of 4 images listed in "
                          f"'{ann}' do not exist ('{missing}')", f'check {key}.dataset.data_root')
    assert ('ignore_empty=True' in proc.stderr) == (tool == 'train')  # no skipping in tests


def test_neck_not_fitting_the_backbone_is_one_error_line(data, tmp_path, run_tool):
    """The demo's Lite0 backbone outputs [40, 112, 320] channels; a neck configured for other
    widths stops at the first forward with both widths and the fix."""
    work_dir = tmp_path / 'work_dir'
    proc = _train_demo(run_tool, data, work_dir, 'model.neck.in_channels=[24,40,112]')
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        'error: neck in_channels=[24, 40, 112] do not match the backbone, whose outputs have '
        "[40, 112, 320] channels: set neck.in_channels=[40, 112, 320] (the backbone's "
        'out_channels), or choose the backbone outputs (out_indices) for this neck')
    assert not list(work_dir.glob('*.pth'))
