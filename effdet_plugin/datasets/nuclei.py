"""Nuclei demo dataset: stardist's bundled fluorescence image -> COCO train/val splits.

Source: ``stardist/data/images/img2d.tif`` (512x512, uint16) and ``mask2d.tif`` (its
human-labelled instance map, 125 nuclei). The image is split by columns (source pixels):
train is ``x < split_x``, val is ``x >= split_x``, so no val pixel ever reaches a training
image (each region is cropped *before* normalisation and resizing).

Border rule: a nucleus cut by a region or tile border is kept, clipped, as a normal instance
(``iscrowd=0``) when at least ``min_visible`` of its pixels lie inside; a smaller fragment
becomes an ``iscrowd=1`` ignore region, so neither detecting nor missing it is scored.
"""
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .coco_builder import CocoBuilder
from .intensity import normalize_intensity

CONVERTER_VERSION = 1
CATEGORY = 'nucleus'


def stardist_demo_files() -> Tuple[Path, Path]:
    """Locate stardist's bundled ``img2d.tif`` and ``mask2d.tif`` without importing stardist.

    stardist is installed ``--no-deps`` for its data only, so importing it would fail.

    Returns:
        tuple[Path, Path]: Image and instance-label paths.
    """
    spec = importlib.util.find_spec('stardist')
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            'stardist is not installed: the nuclei demo data are the img2d.tif/mask2d.tif '
            'files bundled with it. Run `make setup` (or `pip install --no-deps '
            'stardist==0.9.2` in the venv) and retry.')
    folder = Path(list(spec.submodule_search_locations)[0]) / 'data' / 'images'
    files = folder / 'img2d.tif', folder / 'mask2d.tif'
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f'stardist is installed but lacks its demo data {missing}; '
                                'reinstall it: pip install --no-deps --force-reinstall '
                                'stardist==0.9.2')
    return files


def tile_starts(length: int, tile: int, overlap: int) -> List[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with >= ``overlap``.

    The last tile is aligned to the end, so every tile is full size (no padding).
    """
    if tile >= length:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f'overlap must be in [0, tile_size), got {overlap} for tile {tile}')
    starts = list(range(0, length - tile + 1, tile - overlap))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def _resize_labels(labels: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an integer label map to ``(height, width)``, any dtype."""
    h, w = labels.shape
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(int), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(int), w - 1)
    return labels[rows[:, None], cols[None, :]]


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_up_to_date(manifest_file: Path, key: dict) -> Optional[dict]:
    """Return the stored summary if ``manifest_file`` matches ``key`` and all outputs exist."""
    if not manifest_file.is_file():
        return None
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, ValueError):
        return None
    if manifest.get('key') != key:
        return None
    root = manifest_file.parent
    if not all((root / rel).is_file() for rel in manifest.get('outputs', [])):
        return None
    return manifest['summary']


def convert_nuclei(out_dir: Union[str, Path] = 'data/nuclei',
                   upscale: float = 2.0,
                   tile_size: Optional[int] = 256,
                   overlap: int = 64,
                   val_tiles: bool = False,
                   split_x: int = 384,
                   min_visible: float = 0.5,
                   percentiles: Sequence[float] = (1.0, 99.8),
                   seg_format: str = 'rle',
                   force: bool = False) -> Dict[str, dict]:
    """Write the nuclei demo dataset in COCO format under ``out_dir``.

    Layout: ``{train,val}/*.png`` (8-bit, 3-channel), ``semantic/{train,val}/*.png`` (0
    background, 1 nucleus; same stem as the image, for mmdet's ``data_prefix['seg']``) and
    ``annotations/instances_{train,val}.json``. Re-running with the same sources and options
    does nothing (``manifest.json`` records both); changed options rewrite the outputs.

    Args:
        out_dir (str | Path): Output folder. Defaults to 'data/nuclei'.
        upscale (float): Resize factor applied after the split (nuclei are ~10 px wide).
            Defaults to 2.0.
        tile_size (int, optional): Square tile size in output pixels for training tiles;
            None writes the whole region as one image. Defaults to 256.
        overlap (int): Overlap between neighbouring training tiles, output pixels.
            Defaults to 64.
        val_tiles (bool): Also tile the val strip (without overlap, so each nucleus is scored
            once) instead of writing it as one image. Defaults to False.
        split_x (int): First source column of the val strip. Defaults to 384.
        min_visible (float): Fraction of a nucleus that must lie inside an image for it to
            stay a normal instance; smaller fragments become iscrowd=1. Defaults to 0.5.
        percentiles (Sequence[float]): Low/high percentiles of the robust normalisation,
            computed per region. Defaults to (1.0, 99.8).
        seg_format (str): 'rle' or 'polygon'. Defaults to 'rle'.
        force (bool): Rewrite even if the outputs are up to date. Defaults to False.

    Returns:
        dict[str, dict]: Per split, counts (``images``, ``instances``, ``ignored``,
        ``nuclei``), ``image_size`` (w, h) and ``region`` (source x0, y0, x1, y1); plus
        ``skipped`` (True when the outputs were already up to date).
    """
    img_file, mask_file = stardist_demo_files()
    out_dir = Path(out_dir)
    key = dict(version=CONVERTER_VERSION, upscale=upscale, tile_size=tile_size, overlap=overlap,
               val_tiles=val_tiles, split_x=split_x, min_visible=min_visible,
               percentiles=list(percentiles), seg_format=seg_format,
               sources={p.name: _file_digest(p) for p in (img_file, mask_file)})
    manifest_file = out_dir / 'manifest.json'
    summary = None if force else _is_up_to_date(manifest_file, key)
    if summary is not None:
        return {**summary, 'skipped': True}

    import tifffile
    image, labels = tifffile.imread(img_file), tifffile.imread(mask_file)
    height, width = labels.shape
    if not 0 < split_x < width:
        raise ValueError(f'split_x must be inside the image (0, {width}), got {split_x}')
    full_area = np.bincount(labels.ravel())

    _remove_old_outputs(manifest_file)
    outputs: List[str] = []
    summary = {}
    for split, (x0, x1) in (('train', (0, split_x)), ('val', (split_x, width))):
        builder = CocoBuilder([CATEGORY], seg_format)
        unit = normalize_intensity(image[:, x0:x1], 'percentile', percentiles=tuple(percentiles))
        out_h, out_w = round(height * upscale), round((x1 - x0) * upscale)
        img = np.clip(cv2.resize(unit, (out_w, out_h), interpolation=cv2.INTER_LINEAR), 0, 1)
        img = np.repeat(np.rint(img * 255).astype(np.uint8)[..., None], 3, axis=2)
        lab = _resize_labels(labels[:, x0:x1], (out_h, out_w))

        tiled = tile_size is not None and (split == 'train' or val_tiles)
        ov = overlap if split == 'train' else 0
        ys = tile_starts(out_h, tile_size, ov) if tiled else [0]
        xs = tile_starts(out_w, tile_size, ov) if tiled else [0]
        th, tw = (min(tile_size, out_h), min(tile_size, out_w)) if tiled else (out_h, out_w)
        nuclei = set()
        for ty in ys:
            for tx in xs:
                stem = f'{split}_{len(builder.images):03d}'
                tile_lab = lab[ty:ty + th, tx:tx + tw]
                source_box = [x0 + tx / upscale, ty / upscale, x0 + (tx + tw) / upscale,
                              (ty + th) / upscale]
                image_id = builder.add_image(f'{stem}.png', th, tw, source_box=source_box)
                for nucleus_id in np.unique(tile_lab[tile_lab > 0]):
                    mask = tile_lab == nucleus_id
                    visible = min(1.0, mask.sum() / (full_area[nucleus_id] * upscale**2))
                    kept = visible >= min_visible
                    builder.add_mask(image_id, mask, iscrowd=int(not kept),
                                     nucleus_id=int(nucleus_id),
                                     visible_fraction=round(float(visible), 3))
                    if kept:
                        nuclei.add(int(nucleus_id))
                outputs += [_write_png(out_dir / split / f'{stem}.png',
                                       img[ty:ty + th, tx:tx + tw], out_dir),
                            _write_png(out_dir / 'semantic' / split / f'{stem}.png',
                                       (tile_lab > 0).astype(np.uint8), out_dir)]
        ann_file = out_dir / 'annotations' / f'instances_{split}.json'
        builder.dump(ann_file)
        outputs.append(ann_file.relative_to(out_dir).as_posix())
        crowd = sum(a['iscrowd'] for a in builder.annotations)
        summary[split] = dict(images=len(builder.images),
                              instances=len(builder.annotations) - crowd, ignored=crowd,
                              nuclei=len(nuclei), image_size=[tw, th],
                              region=[x0, 0, x1, height])
    manifest_file.write_text(json.dumps({'key': key, 'outputs': outputs, 'summary': summary},
                                        indent=1))
    return {**summary, 'skipped': False}


def _write_png(path: Path, array: np.ndarray, root: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array):
        raise OSError(f"could not write '{path}'")
    return path.relative_to(root).as_posix()


def _remove_old_outputs(manifest_file: Path) -> None:
    """Delete the files a previous run listed, so a changed tiling leaves no stale tiles."""
    if not manifest_file.is_file():
        return
    try:
        outputs = json.loads(manifest_file.read_text()).get('outputs', [])
    except (OSError, ValueError):
        return
    root = manifest_file.parent.resolve()
    for rel in outputs:
        path = (root / rel).resolve()
        if root in path.parents:  # never follow a hand-edited path out of the dataset
            path.unlink(missing_ok=True)
    manifest_file.unlink()
