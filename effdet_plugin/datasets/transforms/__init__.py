"""Data transforms registered into mmdet's ``TRANSFORMS``."""
from .loading import LoadMedicalImageFromFile

__all__ = ['LoadMedicalImageFromFile']
