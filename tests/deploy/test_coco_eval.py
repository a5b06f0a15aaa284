"""COCO bbox AP of a detector on a config's split (deploy/coco_eval.py, which scores the int8
and float files in benchmarks/int8_eval.py)."""
import json
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config

from effdet_plugin.cli.data_options import apply_data_options
from effdet_plugin.deploy.coco_eval import evaluate_detector
from tests.conftest import TINY_CLASSES, write_tiny_coco

DEMO = Path(__file__).resolve().parents[2] / 'configs/demo/effdet_lite0_nuclei.py'


class GroundTruthDetector:
    """Returns the annotated boxes of each image (called in the annotation file's order),
    labelled in the order of ``classes``."""

    def __init__(self, data, classes):
        self.classes = classes
        coco = json.loads((Path(data.data_root) / data.ann_file).read_text())
        names = {cat['id']: cat['name'] for cat in coco['categories']}
        files = {img['id']: img['file_name'] for img in coco['images']}
        self.boxes = {}
        for ann in coco['annotations']:
            x, y, w, h = ann['bbox']
            name = names[ann['category_id']]
            label = classes.index(name) if classes else list(names.values()).index(name)
            self.boxes.setdefault(files[ann['image_id']], []).append(([x, y, x + w, y + h],
                                                                       label))
        self.queue = [img['file_name'] for img in coco['images']]

    def __call__(self, img):
        name = self.queue.pop(0)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        boxes, labels = zip(*self.boxes[name])
        return dict(boxes=np.array(boxes, np.float32), scores=np.ones(len(boxes), np.float32),
                    labels=np.array(labels))


@pytest.fixture
def cfg_and_data(tmp_path):
    data = write_tiny_coco(tmp_path / 'data', num_images=3, size=64)
    cfg = Config.fromfile(str(DEMO))
    cfg.data = dict(root=data.data_root + '/', train_ann=data.ann_file, val_ann=data.ann_file,
                    img_prefix=['images/'], classes=list(TINY_CLASSES))
    apply_data_options(cfg)
    return cfg, data


@pytest.mark.parametrize('classes', [tuple(reversed(TINY_CLASSES)), None])
def test_ground_truth_scores_ap_one(cfg_and_data, classes):
    """Labels map to categories by name (reversed order here), or by category order without
    names; boxes go from x1, y1, x2, y2 to COCO's x, y, w, h."""
    cfg, data = cfg_and_data
    detector = GroundTruthDetector(data, classes)
    result = evaluate_detector(detector, cfg)
    assert result['num_images'] == 3 and not detector.queue
    assert result['bbox_mAP'] == pytest.approx(1.0) and result['bbox_mAP_50'] == 1.0


def test_unknown_class_is_refused(cfg_and_data):
    cfg, data = cfg_and_data
    detector = GroundTruthDetector(data, ('white_box', 'red_box', 'nucleus'))
    with pytest.raises(ValueError, match="'nucleus'.* no category"):
        evaluate_detector(detector, cfg)
