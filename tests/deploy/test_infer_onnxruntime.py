"""tools/infer.py --backend onnxruntime writes what the PyTorch backend writes."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmdet.structures.bbox import bbox_overlaps

from effdet_plugin.deploy import infer
from effdet_plugin.deploy.onnx_export import export_onnx, preprocess_metadata
from tests.deploy.conftest import hard_nms_demo

DEMO = Path(__file__).resolve().parents[2] / 'configs/demo/effdet_lite0_nuclei.py'


def test_same_json_and_pictures_as_pytorch(nuclei_image, tmp_path, run_tool):
    # the demo with hard NMS (soft-NMS cannot be exported)
    nuclei_image = nuclei_image[:, :128]  # 256x128: seconds, not a minute
    image = tmp_path / 'images' / 'strip.png'
    image.parent.mkdir()
    cv2.imwrite(str(image), nuclei_image)
    shape = nuclei_image.shape[:2]  # a multiple of 128: no padding in either backend
    demo = hard_nms_demo(tmp_path, nuclei_image)
    config, cfg, model, checkpoint = demo.config, demo.cfg, demo.model, demo.checkpoint
    onnx_file = tmp_path / 'demo.onnx'
    export_onnx(model, str(onnx_file), shape, metadata=preprocess_metadata(cfg, shape,
                                                                           ('nucleus', )))

    outputs = {}
    for backend in ('pytorch', 'onnxruntime'):
        out_dir = tmp_path / backend
        infer.main([str(config), str(checkpoint), str(image.parent), '--out-dir', str(out_dir),
                    '--backend', backend, '--onnx', str(onnx_file), '--score-thr', '0.95'])
        assert (out_dir / 'strip.png').is_file()
        outputs[backend] = json.loads((out_dir / 'detections.json').read_text())[str(image)]
    # the CLI in a fresh process: no earlier PyTorch run has set mmdet's registry scope
    fresh = run_tool('tools/infer.py', config, 'none', image.parent, '--out-dir',
                     tmp_path / 'fresh', '--backend', 'onnxruntime', '--onnx', onnx_file,
                     '--score-thr', '0.95')
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    fresh_json = json.loads((tmp_path / 'fresh' / 'detections.json').read_text())
    assert fresh_json[str(image)] == outputs['onnxruntime']
    ref, ours = outputs['pytorch'], outputs['onnxruntime']
    assert len(ours) == len(ref) == 100
    assert {d['class_name'] for d in ours} == {'nucleus'}
    # float32 rounding of a random network differs by ~1e-3 between runtimes (see
    # test_raw_maps_as_accurate_as_pytorch), enough to swap near-equal scores at the NMS and
    # max_per_img cuts: the best 50 must match
    ours, ref = ours[:50], ref[:60]
    ious = bbox_overlaps(torch.tensor([d['bbox'] for d in ours]),
                         torch.tensor([d['bbox'] for d in ref]))
    best, match = ious.max(dim=1)
    assert len(set(match.tolist())) == len(ours)
    assert best.min() >= 0.99
    scores = np.array([d['score'] for d in ours])
    ref_scores = np.array([ref[i]['score'] for i in match.tolist()])
    assert np.abs(scores - ref_scores).max() <= 2e-3
    png = [cv2.imread(str(tmp_path / b / 'strip.png')) for b in ('pytorch', 'onnxruntime')]
    assert png[0].shape == png[1].shape == nuclei_image.shape


def test_onnxruntime_backend_needs_onnx_file(tmp_path):
    (tmp_path / 'a.png').write_bytes(b'')
    with pytest.raises(SystemExit, match='--onnx'):
        infer.main([str(DEMO), 'none', str(tmp_path / 'a.png'), '--backend', 'onnxruntime'])
