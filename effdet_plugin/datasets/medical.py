"""Folder-of-images + masks -> COCO instances (microscopy, medical PNG/TIFF, DICOM).

Two mask layouts, matched to images by file stem:

- ``'label'``: one instance-label mask per image, ``<mask_dir>/<stem><mask_suffix>.png|tif``
  (8/16/32-bit, one integer id per instance, 0 background);
- ``'folders'``: one binary mask per instance, ``<mask_dir>/<stem>/*.png|tif``.

Images may be 8/16-bit PNG/TIFF/JPEG or DICOM (read with pydicom); the json references them
in place (``file_name`` relative to ``img_dir``), to be read with ``LoadMedicalImageFromFile``.
A missing mask, a shape mismatch or an empty folder is an error naming the file and the fix;
an image without instances is kept as a negative, with a warning.
"""
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .coco_builder import CocoBuilder, iter_label_instances
from .image_io import IMAGE_EXTS, MASK_EXTS, decode_image

LAYOUTS = ('label', 'folders')


def _list_files(folder: Path, exts: Sequence[str], recursive: bool = False) -> List[Path]:
    exts = tuple(e.lower() for e in exts)
    pattern = folder.rglob('*') if recursive else folder.iterdir()
    return sorted(p for p in pattern if p.is_file() and p.suffix.lower() in exts)


def _read_mask(path: Path) -> np.ndarray:
    """Read a label/binary mask as a 2D integer array, rejecting colour or float masks."""
    mask = decode_image(path.read_bytes(), str(path)).array
    if mask.ndim != 2:
        raise ValueError(f"mask '{path}' has shape {mask.shape}: masks must be single-channel "
                         '(instance ids or 0/1), not colour; convert colour-coded masks to ids')
    if mask.dtype.kind == 'f':
        if not np.all(np.mod(mask, 1) == 0):
            raise ValueError(f"mask '{path}' holds non-integer values: expected instance ids")
        mask = mask.astype(np.int64)
    return mask


def _check_shape(mask: np.ndarray, mask_path: Path, shape: Tuple[int, int],
                 img_path: Path) -> None:
    if mask.shape != shape:
        raise ValueError(f"mask '{mask_path}' is {mask.shape[0]}x{mask.shape[1]} (HxW) but "
                         f"image '{img_path}' is {shape[0]}x{shape[1]}: masks must be "
                         'pixel-aligned with their image; re-export the mask at the image size '
                         '(nearest-neighbour resize)')


def _find_label_mask(mask_dir: Path, stem: str, mask_suffix: str) -> Optional[Path]:
    found = [mask_dir / f'{stem}{mask_suffix}{ext}' for ext in MASK_EXTS]
    found = [p for p in found if p.is_file()]
    if len(found) > 1:
        raise ValueError(f'several masks match image stem {stem!r}: {[str(p) for p in found]}; '
                         'keep only one')
    return found[0] if found else None


def _instance_masks(img_path: Path, shape: Tuple[int, int], mask_dir: Path, layout: str,
                    mask_suffix: str) -> Optional[List[Tuple[str, np.ndarray]]]:
    """Return ``(source, binary mask)`` per instance, or None when the image has no mask."""
    stem = img_path.stem
    if layout == 'label':
        mask_path = _find_label_mask(mask_dir, stem, mask_suffix)
        if mask_path is None:
            return None
        labels = _read_mask(mask_path)
        _check_shape(labels, mask_path, shape, img_path)
        return [(f'{mask_path.name}:{i}', m) for i, m in iter_label_instances(labels)]
    folder = mask_dir / stem
    if not folder.is_dir():
        return None
    instances = []
    for mask_path in _list_files(folder, MASK_EXTS):
        mask = _read_mask(mask_path)
        _check_shape(mask, mask_path, shape, img_path)
        if mask.any():
            instances.append((f'{stem}/{mask_path.name}', mask != 0))
        else:
            warnings.warn(f"instance mask '{mask_path}' is empty; skipped")
    return instances


def convert_masks_to_coco(img_dir: Union[str, Path],
                          mask_dir: Union[str, Path],
                          out_file: Union[str, Path],
                          layout: str = 'label',
                          category: str = 'object',
                          mask_suffix: str = '',
                          image_exts: Sequence[str] = IMAGE_EXTS,
                          recursive: bool = False,
                          seg_format: str = 'rle') -> Dict[str, int]:
    """Convert a folder of images and their instance masks into one COCO json.

    Args:
        img_dir (str | Path): Folder of images (PNG/TIFF/JPEG/BMP/DICOM).
        mask_dir (str | Path): Folder of masks, see the module docstring for ``layout``.
        out_file (str | Path): Output json.
        layout (str): 'label' (one instance-label mask per image) or 'folders' (one folder of
            binary masks per image). Defaults to 'label'.
        category (str): Name of the single category. Defaults to 'object'.
        mask_suffix (str): Suffix between the stem and extension of label masks, e.g. '_mask'
            for ``a.png`` -> ``a_mask.png``. Defaults to ''.
        image_exts (Sequence[str]): Image file extensions to collect. Defaults to
            :data:`IMAGE_EXTS`.
        recursive (bool): Search ``img_dir`` recursively; ``file_name`` then keeps the
            sub-folder, and masks are still matched by stem alone. Defaults to False.
        seg_format (str): 'rle' or 'polygon'. Defaults to 'rle'.

    Returns:
        dict[str, int]: ``images``, ``instances`` and ``negatives`` counts.
    """
    if layout not in LAYOUTS:
        raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
    img_dir, mask_dir = Path(img_dir), Path(mask_dir)
    for name, folder in (('image', img_dir), ('mask', mask_dir)):
        if not folder.is_dir():
            raise FileNotFoundError(f"{name} folder '{folder}' does not exist")
    images = _list_files(img_dir, image_exts, recursive)
    if not images:
        raise FileNotFoundError(f"no images with extensions {tuple(image_exts)} in '{img_dir}'"
                                + ('' if recursive else ' (sub-folders are not searched: '
                                   'use recursive=True / --recursive)'))
    stems = [p.stem for p in images]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise ValueError(f'several images share the stem(s) {dup[:5]}: masks are matched by '
                         'stem, so stems must be unique')

    builder = CocoBuilder([category], seg_format)
    missing, negatives = [], []
    for img_path in images:
        shape = decode_image(img_path.read_bytes(), str(img_path)).array.shape[:2]
        instances = _instance_masks(img_path, shape, mask_dir, layout, mask_suffix)
        if instances is None:
            missing.append(img_path.name)
            continue
        image_id = builder.add_image(img_path.relative_to(img_dir).as_posix(), *shape)
        for source, mask in instances:
            builder.add_mask(image_id, mask, source=source)
        if not instances:
            negatives.append(img_path.name)
    if missing:
        expected = (f"'{mask_dir}/<stem>{mask_suffix}{{{','.join(MASK_EXTS)}}}'"
                    if layout == 'label' else f"a folder '{mask_dir}/<stem>/' of binary masks")
        raise FileNotFoundError(
            f'{len(missing)} image(s) have no mask: {missing[:5]}; expected {expected}. Add the '
            'masks, set mask_suffix (--mask-suffix) if they are named like <stem>_mask.png, '
            'or move the images out of the folder')
    if negatives:
        warnings.warn(f'{len(negatives)} image(s) have no instances and are kept as negatives: '
                      f'{negatives[:5]}')
    builder.dump(out_file)
    return dict(images=len(builder.images), instances=len(builder.annotations),
                negatives=len(negatives))
