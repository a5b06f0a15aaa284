"""The dataset check reports counts and object sizes after the pipelines, and warns when
training sees objects at another scale than testing (AP 0 with a falling loss)."""
import json

import pytest

from effdet_plugin.cli import check_dataset
from effdet_plugin.cli.runner import load_config
from effdet_plugin.datasets.checks import dataset_stats, format_stats, stats_warnings
from tests.data_helpers import data_args, shape_flags, write_shapes

DEMO = 'configs/demo/effdet_lite0_nuclei.py'


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return write_shapes(tmp_path_factory.mktemp('shapes'))


def _flags(root, *extra):
    return shape_flags(root, '--classes', 'from-json', *extra)


def _cfg(root, *extra):
    return load_config(DEMO, data_args=data_args(*_flags(root, *extra)))


def test_native_jitter_agrees_with_native_test(shapes):
    from mmdet.utils import register_all_modules

    import effdet_plugin  # noqa: F401
    register_all_modules()
    stats = dataset_stats(_cfg(shapes), ('train', 'test'), samples=4)
    train, test = stats
    assert train.images == 4 and test.images == 2
    assert set(train.instances) == {'disc', 'square'} and all(train.instances.values())
    assert min(train.annotated_sizes) >= 35 and max(train.annotated_sizes) <= 85
    # test pipeline at native size: sizes unchanged; train jitter within 0.8-1.25
    assert sorted(test.pipeline_sizes) == pytest.approx(sorted(test.annotated_sizes))
    ratio = sum(train.pipeline_sizes) / len(train.pipeline_sizes) / (
        sum(train.annotated_sizes) / len(train.annotated_sizes))
    assert 0.8 < ratio < 1.25
    assert stats_warnings(stats) == []
    report = format_stats(stats)
    assert '[train] 4 images' in report and 'disc=' in report and 'after pipeline' in report


def test_fixed_train_scale_on_larger_images_is_flagged(shapes):
    """The case of issue 11: a 256 training resize target on 600-px images, 1x at test."""
    from mmdet.utils import register_all_modules

    import effdet_plugin  # noqa: F401
    register_all_modules()
    cfg = _cfg(shapes)
    pipeline = cfg.train_dataloader.dataset.pipeline
    jitter = next(i for i, s in enumerate(pipeline) if s['type'] == 'ScaleJitter')
    pipeline[jitter] = dict(type='RandomResize', scale=(256, 256), ratio_range=(0.8, 1.25),
                            keep_ratio=True)
    problems = stats_warnings(dataset_stats(cfg, ('train', 'val'), samples=4))
    assert any('0.4' in p and 'as large after the train pipeline' in p and 'val' in p
               for p in problems), problems


def test_class_and_images_without_instances_are_flagged(shapes):
    from mmdet.utils import register_all_modules

    import effdet_plugin  # noqa: F401
    register_all_modules()
    coco = json.loads((shapes / 'annotations' / 'train.json').read_text())
    coco['categories'].append(dict(id=11, name='triangle'))
    first = coco['images'][0]['id']
    coco['annotations'] = [a for a in coco['annotations'] if a['image_id'] != first]
    (shapes / 'annotations' / 'train3.json').write_text(json.dumps(coco))
    cfg = _cfg(shapes, '--train-ann', 'annotations/train3.json')
    problems = stats_warnings(dataset_stats(cfg, ('train', ), samples=2))
    assert any("train: no instances of class(es) ['triangle']" in p for p in problems)
    assert any('train: 1 of 4 images have no instances' in p for p in problems)


def test_cli_prints_every_split_and_strict_exit(shapes, capsys):
    assert check_dataset.main([DEMO, *_flags(shapes), '--samples', '2']) == 0
    out = capsys.readouterr().out
    for split in ('[train]', '[val]', '[test]'):
        assert split in out
    assert 'OK: every class has instances' in out
    assert check_dataset.main([DEMO, *_flags(shapes), '--samples', '2', '--img-scale', '300',
                               '200', '--strict']) == 0
