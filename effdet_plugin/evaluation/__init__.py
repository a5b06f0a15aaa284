"""Evaluation metrics; importing this package registers them into mmdet's METRICS."""
from .metrics import EffDetSemSegMetric

__all__ = ['EffDetSemSegMetric']
