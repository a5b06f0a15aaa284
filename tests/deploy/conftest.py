"""Fixtures of the deployment tests: the demo model with random weights and a nuclei image."""
import importlib.util
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

import cv2
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope

import effdet_plugin  # noqa: F401
from effdet_plugin.deploy import preprocess
from effdet_plugin.deploy.random_weights import realistic_random_detector

DEMO = Path(__file__).resolve().parents[2] / 'configs/demo/effdet_lite0_nuclei.py'


def build_model(config: Path, x: Optional[torch.Tensor] = None, seed: int = 0, **test_cfg):
    """Random-weight detector of ``config`` (eval mode) with ``test_cfg`` overrides; with an
    input ``x`` its scores and boxes spread like a trained model's on it
    (:func:`realistic_random_detector`), so that NMS has real work."""
    init_default_scope('mmdet')
    cfg = Config.fromfile(str(config))
    cfg.model.backbone.init_cfg = None
    for key, value in test_cfg.items():  # replace, not merge (nms)
        cfg.model.test_cfg[key] = value
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()
    if x is not None:
        realistic_random_detector(model, x, seed)
    return cfg, model


def hard_nms_demo(root: Path, image: np.ndarray) -> SimpleNamespace:
    """The demo with hard NMS (soft-NMS cannot be exported) written under ``root``: its
    ``config`` file, ``cfg``, a ``model`` whose random weights act like a trained model's on
    ``image`` (BGR), and that model's ``checkpoint`` as the tools load it."""
    config = root / 'demo_hard_nms.py'
    config.write_text(f"_base_ = '{DEMO}'\nmodel = dict(test_cfg=dict(nms=dict("
                      "_delete_=True, type='nms', iou_threshold=0.5)))\n")
    cfg, model = build_model(config)
    batch, _ = preprocess(image, cfg.model.data_preprocessor.mean, cfg.model.data_preprocessor.std)
    realistic_random_detector(model, torch.from_numpy(batch))
    checkpoint = root / 'demo.pth'
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=('nucleus', )))), checkpoint)
    return SimpleNamespace(config=config, cfg=cfg, model=model, checkpoint=checkpoint)


@pytest.fixture(scope='session')
def random_detector() -> Callable:
    """:func:`build_model`: ``random_detector(config, x=None, seed=0, **test_cfg)``."""
    return build_model


@pytest.fixture(scope='session')
def nuclei_image(tmp_path_factory) -> np.ndarray:
    """256x256 of the demo's held-out validation strip (BGR uint8), or a synthetic stand-in
    without stardist's data, plus noise of std 2 grey levels so that the flat background
    gives no exactly tied scores (ties make the NMS order, so the kept boxes, arbitrary)."""
    rng = np.random.RandomState(0)
    if importlib.util.find_spec('stardist') is not None:
        from effdet_plugin.datasets.nuclei import convert_nuclei
        out = tmp_path_factory.mktemp('nuclei')
        convert_nuclei(out)
        img = cv2.imread(str(next((out / 'val').glob('*.png'))))[:256]
    else:
        img = rng.randint(0, 30, (256, 256, 3)).astype(np.uint8)
        for _ in range(20):
            x, y, r = rng.randint(10, 246), rng.randint(10, 246), rng.randint(4, 12)
            cv2.circle(img, (x, y), r, (200, 200, 200), -1)
    return (img + rng.normal(0, 2, img.shape)).clip(0, 255).astype(np.uint8)
