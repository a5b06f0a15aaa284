"""Data transforms registered into mmdet's ``TRANSFORMS``."""
from .albu_compat import AlbuCompat
from .loading import LoadMedicalImageFromFile

__all__ = ['AlbuCompat', 'LoadMedicalImageFromFile']
