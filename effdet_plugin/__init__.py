"""effdet_plugin: EfficientNet backbones, BiFPN and EfficientDet heads for mmdet 3.x.

``import effdet_plugin`` (or ``custom_imports=dict(imports=['effdet_plugin'])`` in a config)
registers every component into mmdet's registries.
"""
from . import checkpoint, datasets, engine, evaluation, models  # noqa: F401

__version__ = '0.1.0'
