"""Pictures of small objects: no label text on objects smaller than it; labels elsewhere."""
import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.visualization import DetLocalVisualizer
from mmengine.structures import InstanceData

from effdet_plugin.cli.drawing import boxes_only, label_area, labels_hide_objects

CLASSES = ('disc', 'square')


def _result(side: float, n: int = 3) -> DetDataSample:
    x = np.arange(n) * 3 * side + 10
    boxes = np.stack([x, x * 0 + 20, x + side, x * 0 + 20 + side], axis=1)
    result = DetDataSample()
    result.pred_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32), labels=torch.tensor([0, 1, 0][:n]),
        scores=torch.tensor([0.95, 0.9, 0.1][:n]))
    return result


def _label_pixels(result, hide: bool) -> int:
    """Pixels of the black label boxes mmdet draws, on a white image."""
    visualizer = DetLocalVisualizer(name=f'drawing_test_{hide}_{len(result.pred_instances)}')
    visualizer.dataset_meta = dict(classes=CLASSES)
    with boxes_only(visualizer, hide):
        visualizer.add_datasample('x', np.full((200, 400, 3), 255, np.uint8), result,
                                  draw_gt=False, show=False, pred_score_thr=0.3)
    assert 'draw_texts' not in vars(visualizer)  # the class's method again after the block
    return int((visualizer.get_image().sum(-1) < 150).sum())


def test_labels_hide_small_objects_only():
    # 'disc: 95.0' in mmdet's smallest font is about 40 x 9 px: larger than a 17 px nucleus
    assert label_area(['disc: 95.0'], np.array([17.0**2]))[0] > 17**2
    assert labels_hide_objects(_result(17), CLASSES, score_thr=0.3)
    assert not labels_hide_objects(_result(60), CLASSES, score_thr=0.3)
    # only shown detections count; none shown: nothing to hide
    assert not labels_hide_objects(_result(17), CLASSES, score_thr=0.99)


def test_boxes_only_draws_no_text():
    small = _result(17)
    assert _label_pixels(small, hide=False) > 100
    assert _label_pixels(small, hide=True) == 0
