from .sem_seg_metric import EffDetSemSegMetric

__all__ = ['EffDetSemSegMetric']
