"""docs/own_data.md recipe (a) through the real CLIs, on data that is not the nuclei: 600x400
images, 40-80 px discs and squares, category ids 5 and 9.

The fast test checks that tools/test.py and tools/infer.py follow the data options (random
weights); the slow one trains briefly from the ImageNet Lite0 weights and asserts an AP floor,
then tests and infers with the config the work dir keeps, without repeating the options.
"""
import argparse
import json
import pickle
import re
from pathlib import Path

import pytest
import torch

from effdet_plugin.datasets.shapes import write_shapes_coco
from tests.data_helpers import shape_flags

CONFIG = 'configs/demo/effdet_lite0_nuclei.py'


def _flags(root: Path):
    """The shapes data at ``root``, its classes read from the annotation file."""
    return shape_flags(root, '--classes', 'from-json')


def _val_images(root: Path):
    coco = json.loads((root / 'annotations' / 'val.json').read_text())
    return sorted(str(root / 'images' / img['file_name']) for img in coco['images'])


def test_test_and_infer_follow_the_data_options(tmp_path, run_tool_ok):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import effdet_plugin  # noqa: F401
    from effdet_plugin.cli.data_options import add_data_args
    from effdet_plugin.cli.runner import load_config
    register_all_modules()
    root = tmp_path / 'shapes'
    write_shapes_coco(root, num_train=2, num_val=2, size=(320, 256))  # small: random weights
    parser = argparse.ArgumentParser()
    add_data_args(parser)
    cfg = load_config(CONFIG, data_args=parser.parse_args(_flags(root)))
    cfg.model.backbone.pop('init_cfg', None)
    ckpt = tmp_path / 'random.pth'
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict()}, ckpt)

    out = run_tool_ok('tools/test.py', CONFIG, ckpt, '--work-dir', tmp_path / 'test', '--out',
                      tmp_path / 'preds.pkl', *_flags(root))
    assert f'test={root}/annotations/val.json' in out
    assert "classes=('disc', 'square')" in out
    with open(tmp_path / 'preds.pkl', 'rb') as f:
        preds = pickle.load(f)
    assert sorted(p['img_path'] for p in preds) == _val_images(root)

    run_tool_ok('tools/infer.py', CONFIG, ckpt, '--out-dir', tmp_path / 'infer', *_flags(root))
    report = json.loads((tmp_path / 'infer' / 'detections.json').read_text())
    assert sorted(report) == _val_images(root)  # no INPUTS: the test split's images
    assert {d['class_name'] for dets in report.values() for d in dets} <= {'disc', 'square'}


# Measured: bbox AP 0.935 (docs/own_data.md: make_shapes defaults, 400 iterations).
MIN_AP = 0.85


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_recipe_trains_tests_and_infers_on_own_data(tmp_path, run_tool_ok):
    """docs/own_data.md recipe (a) as written: make_shapes.py's data (16 + 4 images), the demo
    config's schedule (400 iterations) from the ImageNet Lite0 weights; the AP of the best
    checkpoint on the test split must reach the recipe's floor."""
    from effdet_plugin.checkpoint import convert_lite_package
    root = tmp_path / 'shapes'
    write_shapes_coco(root)
    imagenet = tmp_path / 'lite0_imagenet.pth'
    convert_lite_package(str(imagenet))
    work = tmp_path / 'work'
    run_tool_ok('tools/train.py', CONFIG, '--work-dir', work, *_flags(root), '--cfg-options',
                f'model.backbone.init_cfg.checkpoint={imagenet}', timeout=3000)
    best, = work.glob('best_coco_bbox_mAP_iter_*.pth')

    # the work dir's config names the data: no options needed any more
    config = work / Path(CONFIG).name
    out = run_tool_ok('tools/test.py', config, best, '--work-dir', work / 'test')
    assert f'test={root}/annotations/val.json' in out
    ap = float(re.search(r'coco/bbox_mAP: ([\d.]+)', out).group(1))
    print(f'own-data recipe: bbox AP {ap:.3f} ({best.name})')
    assert ap >= MIN_AP, out[-3000:]

    run_tool_ok('tools/infer.py', config, best, '--out-dir', work / 'pred', '--score-thr', '0.5')
    report = json.loads((work / 'pred' / 'detections.json').read_text())
    assert sorted(report) == _val_images(root)
    confident = [d for dets in report.values() for d in dets if d['score'] > 0.5]
    assert len(confident) >= 10 and {d['class_name'] for d in confident} == {'disc', 'square'}
