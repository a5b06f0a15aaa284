"""A missing dataset stops tools/train.py at once, naming the path and the fix; the config
check and RobustCocoDataset share one path check."""
import pytest

from effdet_plugin.datasets.checks import DatasetNotFoundError, check_dataset_paths, missing_paths


def _point_at_missing_coco(cfg, tmp_path):
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'data' / 'coco') + '/'
    cfg.train_dataloader.dataset.ann_file = 'annotations/instances_train2017.json'
    cfg.train_dataloader.dataset.data_prefix = dict(img='train2017/')
    return cfg


def test_existing_dataset_passes(tiny_det_cfg):
    check_dataset_paths(tiny_det_cfg(with_val=True), ('train', 'val', 'test'))


def test_missing_coco_message(tiny_det_cfg, tmp_path):
    cfg = _point_at_missing_coco(tiny_det_cfg(), tmp_path)
    with pytest.raises(DatasetNotFoundError) as info:
        check_dataset_paths(cfg)
    message = str(info.value)
    assert message.startswith('COCO not found at ')
    assert str(tmp_path / 'data/coco/annotations/instances_train2017.json') in message
    assert str(tmp_path / 'data/coco/train2017/') in message
    assert 'data/coco/{annotations,train2017,val2017}' in message
    assert 'data/README.md' in message
    assert 'train_dataloader.dataset.data_root/ann_file' in message and '--cfg-options' in message
    # Only the requested splits are checked.
    check_dataset_paths(cfg, ('test', ))


def test_wrapped_and_generic_datasets(tiny_det_cfg, tmp_path):
    cfg = tiny_det_cfg(with_val=True)
    cfg.val_dataloader.dataset = dict(
        type='ConcatDataset',
        datasets=[cfg.val_dataloader.dataset,
                  dict(type='RepeatDataset', times=2,
                       dataset=dict(type='MyNucleiDataset', data_root=str(tmp_path / 'nope'),
                                    ann_file='train.json'))])
    with pytest.raises(DatasetNotFoundError,
                       match=r'MyNucleiDataset not found at .*nope/train\.json.*'
                       r'val_dataloader\.dataset\.datasets\[1\]\.dataset\.data_root'):
        check_dataset_paths(cfg)
    # The val split is only built (hence checked) when there is a val loop.
    cfg.val_cfg = None
    check_dataset_paths(cfg)


def test_train_cli_stops_before_building_anything(tiny_det_cfg, tmp_path, run_tool):
    cfg = _point_at_missing_coco(tiny_det_cfg(), tmp_path)
    cfg_file = tmp_path / 'missing.py'
    cfg.dump(str(cfg_file))
    proc = run_tool('tools/train.py', cfg_file)
    assert proc.returncode == 1
    assert 'COCO not found at' in proc.stderr and 'Traceback' not in proc.stderr
    assert not (tmp_path / 'work_dir').exists()  # no Runner was built


def test_check_dataset_cli_errors_like_train(tiny_det_cfg, tmp_path, run_tool):
    """tools/analysis/check_dataset.py: a missing dataset or a bad data flag gives one
    `error:` line and exit status 1, never a traceback."""
    cfg = _point_at_missing_coco(tiny_det_cfg(with_val=True), tmp_path)
    cfg_file = tmp_path / 'missing.py'
    cfg.dump(str(cfg_file))
    proc = run_tool('tools/analysis/check_dataset.py', cfg_file, '--splits', 'train')
    assert proc.returncode == 1
    assert proc.stderr.startswith('error: COCO not found at '), proc.stderr
    assert 'Traceback' not in proc.stderr

    proc = run_tool('tools/analysis/check_dataset.py', cfg_file, '--data-root', f'{tmp_path}/',
                    '--train-ann', 'nope.json', '--classes', 'from-json')
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: --classes from-json: annotation file "), proc.stderr
    assert 'Traceback' not in proc.stderr


def test_config_and_dataset_name_the_same_missing_paths(tiny_det_cfg, tmp_path):
    """One path check: the config check and RobustCocoDataset report the same paths."""
    from mmdet.registry import DATASETS
    from mmengine.registry import DefaultScope

    import effdet_plugin  # noqa: F401  (registers RobustCocoDataset)
    cfg = _point_at_missing_coco(tiny_det_cfg(), tmp_path)
    dataset = cfg.train_dataloader.dataset
    dataset.update(type='RobustCocoDataset', pipeline=[])
    missing = missing_paths(dataset.data_root, dataset.ann_file, dataset.data_prefix)
    assert missing == [
        f"annotation file '{tmp_path}/data/coco/annotations/instances_train2017.json'",
        f"image folder '{tmp_path}/data/coco/train2017/'"]
    with pytest.raises(DatasetNotFoundError) as from_config:
        check_dataset_paths(cfg)
    # in mmdet's scope whatever scope an earlier test in this process left current
    with DefaultScope.overwrite_default_scope('mmdet'), \
            pytest.raises(DatasetNotFoundError) as from_dataset:
        DATASETS.build(dataset)
    assert all(p in str(from_config.value) and p in str(from_dataset.value) for p in missing)
    assert 'data/README.md' in str(from_dataset.value)
