"""Pictures of small objects that stay readable: boxes only when labels would cover them.

mmdet's ``DetLocalVisualizer`` writes ``class: score`` at the top-left corner of every box in a
font of at least 6 pt: about 40 x 9 px for ``disc: 95.3``. On 17-px nuclei each label covers
its own object and the neighbours, so tools/infer.py draws boxes (and masks) without text when
the shown objects are mostly smaller than their labels; the class names and scores stay in the
JSON file and the box colours still tell the classes apart.
"""
import contextlib
from typing import Iterator, Sequence

import numpy as np
from mmdet.visualization.palette import _get_adaptive_scales

#: Width of one character and height of a label, in multiples of mmdet's font size (px),
#: measured on its rendering (``disc: 80.0`` at font 6: 41 x 9 px).
CHAR_WIDTH, LABEL_HEIGHT = 0.67, 1.5


def label_area(texts: Sequence[str], box_areas: np.ndarray) -> np.ndarray:
    """Area (px) of the labels mmdet draws for boxes of ``box_areas`` with ``texts``."""
    fonts = np.floor(13 * _get_adaptive_scales(np.asarray(box_areas, dtype=np.float64)))
    chars = np.array([len(t) for t in texts], dtype=np.float64)
    return (CHAR_WIDTH * fonts * chars) * (LABEL_HEIGHT * fonts)


def labels_hide_objects(result, classes: Sequence[str], score_thr: float) -> bool:
    """Whether the labels of the detections shown (score >= ``score_thr``) would hide them:
    the median shown box is smaller than its label."""
    if 'pred_instances' not in result:
        return False
    inst = result.pred_instances.cpu().numpy()
    shown = inst.scores >= score_thr
    if not shown.any():
        return False
    boxes = np.asarray(inst.bboxes)[shown]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    texts = [f'{classes[int(label)] if classes else f"class {int(label)}"}: '
             f'{round(float(score) * 100, 1)}'
             for label, score in zip(inst.labels[shown], inst.scores[shown])]
    return bool(np.median(areas) < np.median(label_area(texts, areas)))


@contextlib.contextmanager
def boxes_only(visualizer, enabled: bool = True) -> Iterator[None]:
    """Within the block, ``visualizer`` draws no text (boxes and masks only) if ``enabled``."""
    if not enabled:
        yield
        return
    visualizer.draw_texts = lambda *args, **kwargs: visualizer
    try:
        yield
    finally:
        del visualizer.draw_texts  # the class's method again
