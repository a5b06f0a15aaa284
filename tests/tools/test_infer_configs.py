"""tools/infer.py runs with every config in configs/ (random weights, one tiny image each).

Big COCO configs run at a small input through ``--img-scale``. Slow-marked: the largest
(D5-D7x, whose random checkpoints alone are hundreds of MB) and the members of a family whose
code path a fast one already runs (D1, D2, D4 beside D0 and D3; Lite1-4 beside Lite0; the
Lite1/Lite2 nuclei configs beside Lite0's).
"""
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from effdet_plugin.deploy import infer

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / 'configs').rglob('*.py')
                 if '_base_' not in p.parts)
BIG = ('effdet_b5', 'effdet_b6', 'effdet_b7')
SAME_PATH = ('effdet_b1', 'effdet_b2', 'effdet_b4', 'effdet_lite1', 'effdet_lite2',
             'effdet_lite3', 'effdet_lite4', 'effdet-lite1_', 'effdet-lite2_')


def _params():
    for config in CONFIGS:
        marks = [pytest.mark.slow] if Path(config).name.startswith(BIG + SAME_PATH) else []
        yield pytest.param(config, marks=marks, id=Path(config).stem)


def random_checkpoint(config: str, path: Path) -> Path:
    """Save the randomly initialised weights of ``config``'s model (no download)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import effdet_plugin  # noqa: F401
    register_all_modules()
    cfg = Config.fromfile(str(REPO / config))
    cfg.model.backbone.pop('init_cfg', None)
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict(),
                'meta': {'dataset_meta': {'classes': ('thing', ) * 90}}}, path)
    return path


def test_every_config_is_covered():
    assert len(CONFIGS) >= 20 and 'configs/demo/effdet_lite0_nuclei.py' in CONFIGS
    assert any(c.startswith('configs/medical/') for c in CONFIGS)
    assert any(c.startswith('configs/swap/') for c in CONFIGS)


@pytest.mark.parametrize('config', list(_params()))
def test_infer_runs_with_config(config, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    ckpt = random_checkpoint(config, tmp_path / 'random.pth')
    image = tmp_path / 'img.png'
    cv2.imwrite(str(image), np.random.RandomState(0).randint(0, 255, (96, 128, 3), np.uint8))
    out = tmp_path / 'out'
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        infer.main([config, str(ckpt), str(image), '--out-dir', str(out), '--img-scale', '128',
                    '128', '--score-thr', '0'])
    assert not [w for w in caught if 'Failed to add' in str(w.message)]  # no vis backend noise
    report = json.loads((out / 'detections.json').read_text())
    assert list(report) == [str(image)]
    assert cv2.imread(str(out / 'img.png')).shape[:2] == (96, 128)  # drawn at original size
    if 'seg_nuclei' in config:  # semantic only: a class map, no boxes
        pixels = json.loads((out / 'semantic_pixels.json').read_text())[str(image)]
        assert sum(pixels.values()) == 96 * 128
    else:
        boxes = np.array([d['bbox'] for d in report[str(image)]]).reshape(-1, 4)
        assert (boxes[:, 2] <= 128 + 1e-3).all() and (boxes[:, 3] <= 96 + 1e-3).all()


MEDICAL = 'configs/medical/effdet-lite0_nuclei.py'


@pytest.fixture(scope='module')
def medical_ckpt(tmp_path_factory):
    return random_checkpoint(MEDICAL, tmp_path_factory.mktemp('medical') / 'random.pth')


def _infer_without_boxes(tmp_path, config, ckpt, image, *extra):
    """Run infer with every box hidden, so the PNG is exactly the loaded image (RGB->BGR)."""
    out = tmp_path / 'out'
    infer.main([str(config), str(ckpt), str(image), '--out-dir', str(out), '--score-thr', '1.01',
                *extra])
    return cv2.imread(str(out / f'{image.stem}.png'))


def test_medical_config_uses_its_loader_window(medical_ckpt, tmp_path, monkeypatch):
    """A 'fixed' window in the config is the one applied, not a per-image min/max."""
    from mmengine.config import Config

    from effdet_plugin.cli.data_options import split_datasets
    from effdet_plugin.datasets.transforms import LoadMedicalImageFromFile
    monkeypatch.chdir(REPO)
    cfg = Config.fromfile(MEDICAL)
    for split in ('train', 'val', 'test'):
        split_datasets(cfg, split)[0][1].pipeline[0] = dict(
            type='LoadMedicalImageFromFile', window='fixed', value_range=(0, 4095))
    config = tmp_path / 'fixed.py'
    cfg.dump(str(config))
    image = tmp_path / 'gray16.png'
    raw = np.random.RandomState(1).randint(1000, 3000, (64, 80), np.uint16)
    cv2.imwrite(str(image), raw)
    drawn = _infer_without_boxes(tmp_path, config, medical_ckpt, image)
    expected = LoadMedicalImageFromFile(window='fixed', value_range=(0, 4095))(
        dict(img_path=str(image)))['img']
    np.testing.assert_array_equal(drawn, expected)
    # a min/max stretch would use the whole 0-255 range; the fixed window does not
    assert drawn.max() < 200 and drawn.min() > 50
    # --window fixed keeps the config's range; without one it stops, naming value_range
    again = _infer_without_boxes(tmp_path, config, medical_ckpt, image, '--window', 'fixed')
    np.testing.assert_array_equal(again, expected)
    with pytest.raises(ValueError, match=r"window='fixed' needs value_range=\(min, max\)"):
        _infer_without_boxes(tmp_path, MEDICAL, medical_ckpt, image, '--window', 'fixed')


def test_medical_config_window_option_for_16bit_and_dicom(medical_ckpt, tmp_path, monkeypatch,
                                                          capsys):
    import pydicom
    monkeypatch.chdir(REPO)
    image = tmp_path / 'gray16.png'
    cv2.imwrite(str(image), np.random.RandomState(2).randint(0, 65535, (64, 80), np.uint16))
    # the nuclei config reads raw 8-bit ('none'): a 16-bit file needs a window, and says so
    with pytest.raises(SystemExit, match='1 of 1 images failed'):
        _infer_without_boxes(tmp_path, MEDICAL, medical_ckpt, image)
    assert 'choose a window mode' in capsys.readouterr().err
    drawn = _infer_without_boxes(tmp_path, MEDICAL, medical_ckpt, image, '--window', 'minmax')
    assert drawn.min() == 0 and drawn.max() == 255
    dicom = tmp_path / 'ct.dcm'
    dicom.write_bytes((Path(pydicom.__file__).parent / 'data' / 'test_files' /
                       'CT_small.dcm').read_bytes())
    drawn = _infer_without_boxes(tmp_path, MEDICAL, medical_ckpt, dicom, '--window',
                                 'percentile')
    assert drawn.shape[:2] == (128, 128) and drawn.std() > 10
