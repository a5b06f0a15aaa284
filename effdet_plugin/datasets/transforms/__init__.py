"""Data transforms registered into mmdet's ``TRANSFORMS``."""
from .albu_compat import AlbuCompat
from .loading import LoadMedicalImageFromFile
from .resize import ScaleJitter

__all__ = ['AlbuCompat', 'LoadMedicalImageFromFile', 'ScaleJitter']
