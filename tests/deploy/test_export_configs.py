"""Every EfficientDet config exports (random weights, 256x256 input) and runs in onnxruntime;
the export CLI; segmentation configs export ``seg_logits``."""
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from effdet_plugin.deploy import export as export_tool

REPO = Path(__file__).resolve().parents[2]
# export + run takes ~8 s for the small ones on an idle 2-core machine, up to minutes for D7x;
# one config per family (D, Lite) in the fast tier: the larger ones export through the same code
FAST = ['effdet_b0_coco', 'effdet_lite0_coco']
SLOW = [f'effdet_b{i}_coco' for i in range(1, 8)] + ['effdet_b7x_coco'] + [
    f'effdet_lite{i}_coco' for i in range(1, 5)]


def run_exported(onnx_file: Path, shape=(256, 256), batch: int = 1) -> dict:
    session = ort.InferenceSession(str(onnx_file), providers=['CPUExecutionProvider'])
    x = np.random.RandomState(0).randn(batch, 3, *shape).astype(np.float32)
    names = [out.name for out in session.get_outputs()]
    return dict(zip(names, session.run(names, {'input': x})))


@pytest.mark.parametrize('name', FAST + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW])
def test_config_exports_and_runs(name, tmp_path):
    out = tmp_path / f'{name}.onnx'
    export_tool.main([str(REPO / 'configs' / f'{name}.py'), 'none', '--out', str(out),
                      '--shape', '256', '256', '--dynamic'])
    outputs = run_exported(out, batch=2)
    assert list(outputs) == ['boxes', 'scores', 'labels']
    assert outputs['boxes'].shape == (2, 100, 4) and outputs['labels'].dtype == np.int64
    boxes, labels = outputs['boxes'], outputs['labels']
    assert ((boxes >= 0) & (boxes <= 256)).all()
    assert ((labels >= -1) & (labels < 80)).all()
    assert ((outputs['scores'] > 0) == (labels >= 0)).all()  # padding: score 0, label -1


def test_default_shape_is_the_test_resize_scale(tmp_path):
    out = tmp_path / 'lite0.onnx'
    export_tool.main([str(REPO / 'configs/effdet_lite0_coco.py'), 'none', '--out', str(out),
                      '--no-nms'])
    outputs = run_exported(out, shape=(384, 384))  # 320 padded to a multiple of 128
    assert outputs['cls_score_0'].shape == (1, 9 * 80, 48, 48)
    assert outputs['bbox_pred_4'].shape == (1, 9 * 4, 3, 3)


def test_shape_must_fit_the_largest_stride(tmp_path):
    with pytest.raises(SystemExit, match='pad_size_divisor 128'):
        export_tool.main([str(REPO / 'configs/effdet_b0_coco.py'), 'none', '--out',
                          str(tmp_path / 'x.onnx'), '--shape', '300', '300'])


def test_factor_resizing_config_needs_shape(tmp_path):
    with pytest.raises(SystemExit, match='--shape H W'):
        export_tool.main([str(REPO / 'configs/demo/effdet_lite0_nuclei.py'), 'none', '--out',
                          str(tmp_path / 'x.onnx')])


@pytest.mark.parametrize('name,outputs', [
    ('effdet-lite0-seg_nuclei', ['seg_logits']),
    ('effdet-lite0-detseg_nuclei', ['boxes', 'scores', 'labels', 'seg_logits']),
])
def test_segmentation_configs_export_seg_logits(name, outputs, tmp_path):
    out = tmp_path / f'{name}.onnx'
    export_tool.main([str(REPO / 'configs/medical' / f'{name}.py'), 'none', '--out', str(out),
                      '--shape', '256', '256'])
    result = run_exported(out)
    assert list(result) == outputs
    assert result['seg_logits'].shape == (1, 2, 256, 256)


def test_dynamic_hw_cli(tmp_path):
    """--dynamic-hw: D0 (TF-"SAME" padding) traced at 256x256 runs at 384x256; the metadata
    then holds no fixed input shape, so preprocessing pads to the divisor instead."""
    out = tmp_path / 'd0.onnx'
    export_tool.main([str(REPO / 'configs/effdet_b0_coco.py'), 'none', '--out', str(out),
                      '--shape', '256', '256', '--dynamic-hw', '--no-nms'])
    outputs = run_exported(out, shape=(384, 256))
    assert outputs['cls_score_0'].shape == (1, 9 * 80, 48, 32)
    assert outputs['bbox_pred_4'].shape == (1, 9 * 4, 3, 2)
    meta = ort.InferenceSession(str(out)).get_modelmeta().custom_metadata_map
    assert json.loads(meta['effdet_preprocess'])['input_shape'] is None
