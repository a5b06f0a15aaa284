"""Importing this package registers every model component into mmdet's registries."""
from . import backbones, dense_heads, detectors, layers, necks, seg_heads, task_modules, utils

__all__ = ['backbones', 'dense_heads', 'detectors', 'layers', 'necks', 'seg_heads',
           'task_modules', 'utils']
