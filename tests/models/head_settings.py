"""EffDetHead's train/test settings for tests that build the head or a detector by hand.

The head has no defaults for them: they are read from the config that holds the official
values (configs/_base_/models/efficientdet_d0.py), never copied into tests.
"""
import copy
from functools import lru_cache
from pathlib import Path

from mmengine.config import Config, ConfigDict

MODEL_BASE = Path(__file__).resolve().parents[2] / 'configs/_base_/models/efficientdet_d0.py'


@lru_cache(maxsize=1)
def _official_model() -> ConfigDict:
    return Config.fromfile(str(MODEL_BASE)).model


def official_settings(**test_cfg) -> dict:
    """``dict(train_cfg=..., test_cfg=...)`` of the official model, fresh copies; keywords
    replace ``test_cfg`` entries (``nms=dict(type='nms', iou_threshold=0.5)``)."""
    model = _official_model()
    return dict(train_cfg=copy.deepcopy(model.train_cfg),
                test_cfg=ConfigDict(copy.deepcopy(model.test_cfg), **test_cfg))
