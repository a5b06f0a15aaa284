"""tools/infer.py end to end: a folder with 8-bit, 16-bit and DICOM images in, PNGs + JSON out."""
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def run_infer(run_tool, cfg_path, ckpt, images, out) -> subprocess.CompletedProcess:
    """tools/infer.py on ``images`` into ``out``, keeping every box (untrained model)."""
    return run_tool('tools/infer.py', cfg_path, ckpt, images, '--out-dir', out,
                    '--score-thr', '0.0')


@pytest.fixture
def trained_checkpoint(tiny_det_cfg, tmp_path):
    """A tiny RetinaNet config file and a checkpoint of its (untrained) weights."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = tiny_det_cfg()
    cfg.model.test_cfg.score_thr = 0.0  # untrained: keep every box so the JSON is non-empty
    cfg_path = tmp_path / 'tiny.py'
    cfg.dump(str(cfg_path))
    model = MODELS.build(cfg.model)
    ckpt = tmp_path / 'tiny.pth'
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': ('box', 'disc')}}}, ckpt)
    return cfg_path, ckpt


def test_infer_folder_with_8bit_16bit_and_dicom(trained_checkpoint, tmp_path, run_tool):
    import pydicom
    cfg_path, ckpt = trained_checkpoint
    images = tmp_path / 'images'
    images.mkdir()
    rng = np.random.RandomState(0)
    cv2.imwrite(str(images / 'rgb.png'), rng.randint(0, 255, (64, 80, 3), np.uint8))
    cv2.imwrite(str(images / 'gray16.png'), rng.randint(0, 65535, (72, 64), np.uint16))
    dicom = Path(pydicom.__file__).parent / 'data' / 'test_files' / 'CT_small.dcm'
    (images / 'ct.dcm').write_bytes(dicom.read_bytes())
    (images / 'notes.txt').write_text('not an image: ignored')
    out = tmp_path / 'out'
    proc = run_infer(run_tool, cfg_path, ckpt, images, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / 'detections.json').read_text())
    assert sorted(Path(k).name for k in report) == ['ct.dcm', 'gray16.png', 'rgb.png']
    for stem, (h, w) in {'rgb': (64, 80), 'gray16': (72, 64), 'ct': (128, 128)}.items():
        png = cv2.imread(str(out / f'{stem}.png'))
        assert png is not None and png.shape[:2] == (h, w)  # drawn at the original size
    dets = report[str(images / 'rgb.png')]
    assert dets and {'bbox', 'score', 'label', 'class_name'} <= set(dets[0])
    assert all(d['class_name'] in ('box', 'disc') for d in dets)
    boxes = np.array([d['bbox'] for d in dets])
    assert (boxes[:, 2] <= 80 + 1e-3).all() and (boxes[:, 3] <= 64 + 1e-3).all()


def test_infer_missing_input_says_what_to_pass(trained_checkpoint, tmp_path, run_tool):
    cfg_path, ckpt = trained_checkpoint
    proc = run_tool('tools/infer.py', cfg_path, ckpt, tmp_path / 'nope')
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: input '{tmp_path / 'nope'}' does not exist: pass an image file, a DICOM file "
        'or a folder of images')


def test_infer_skips_an_undecodable_file_and_reports_it(trained_checkpoint, tmp_path, run_tool):
    cfg_path, ckpt = trained_checkpoint
    images = tmp_path / 'images'
    images.mkdir()
    rng = np.random.RandomState(0)
    for name in ('a.png', 'c.png', 'd.png'):
        cv2.imwrite(str(images / name), rng.randint(0, 255, (64, 64, 3), np.uint8))
    (images / 'b.png').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(200))  # truncated PNG
    out = tmp_path / 'out'
    proc = run_infer(run_tool, cfg_path, ckpt, images, out)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f'warning: skipped {images / "b.png"}' in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith('1 of 4 images failed')
    report = json.loads((out / 'detections.json').read_text())
    assert sorted(Path(k).name for k in report) == ['a.png', 'c.png', 'd.png']
    assert sorted(p.name for p in out.glob('*.png')) == ['a.png', 'c.png', 'd.png']


def _write_distinct_images(paths) -> None:
    """Random images of distinct widths (40, 48, ...), so a picture tells its input."""
    rng = np.random.RandomState(0)
    for i, path in enumerate(paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), rng.randint(0, 255, (48, 40 + 8 * i, 3), np.uint8))


def test_inputs_sharing_a_name_get_their_own_pictures(trained_checkpoint, tmp_path, run_tool):
    """k.png and k.jpg in one folder: two pictures (each keeps its extension), not one
    overwritten; a name no other input shares stays <stem>.png."""
    cfg_path, ckpt = trained_checkpoint
    images = tmp_path / 'images'
    inputs = [images / 'k.png', images / 'k.jpg', images / 'other.jpeg']
    _write_distinct_images(inputs)
    out = tmp_path / 'out'
    proc = run_infer(run_tool, cfg_path, ckpt, images, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pictures = {'k.png': 'k.png.png', 'k.jpg': 'k.jpg.png', 'other.jpeg': 'other.png'}
    assert sorted(p.name for p in out.glob('*.png')) == sorted(pictures.values())
    for name, picture in pictures.items():  # each picture drawn from its own input
        assert cv2.imread(str(out / picture)).shape == cv2.imread(str(images / name)).shape
    assert len(json.loads((out / 'detections.json').read_text())) == 3


def test_images_of_the_test_split_keep_their_folders(trained_checkpoint, tmp_path, run_tool):
    """Without INPUTS, images of the annotation file in sub-folders: a/k.png and b/k.png get
    out/a/k.png and out/b/k.png."""
    from mmengine.config import Config
    cfg_path, ckpt = trained_checkpoint
    root = tmp_path / 'data'
    files = ['a/k.png', 'b/k.png']
    _write_distinct_images([root / 'images' / f for f in files])
    coco = dict(images=[dict(id=i, file_name=f, width=40, height=48)
                        for i, f in enumerate(files)], annotations=[], categories=[])
    (root / 'test.json').write_text(json.dumps(coco))
    cfg = Config.fromfile(str(cfg_path))
    cfg.test_dataloader.dataset.update(data_root=str(root), ann_file='test.json',
                                       data_prefix=dict(img='images/'))
    cfg.dump(str(cfg_path))
    out = tmp_path / 'out'
    proc = run_tool('tools/infer.py', cfg_path, ckpt, '--out-dir', out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(str(p.relative_to(out)) for p in out.rglob('*.png')) == files
    report = json.loads((out / 'detections.json').read_text())
    assert sorted(report) == [str(root / 'images' / f) for f in files]
