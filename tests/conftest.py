"""Shared fixtures: a tiny synthetic COCO-format dataset and a tiny detector config over it.

The dataset is written once per session; every test gets its own config (and work dir), so
tests can mutate configs freely. Everything is sized to train in seconds on a 2-core CPU.
"""
import contextlib
import copy
import gc
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator, List, Optional

import cv2
import mmengine.config.config
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope

from tests.forked_tool import can_fork, run_forked, watch_torch_threads

# mmengine formats every config it prints or dumps with yapf: about 1 s per config on this CPU,
# a sixth of a tiny training's time. What the tests read from those texts is their content, not
# their layout, so in the test process (and the tools forked from it) they stay unformatted.
mmengine.config.config.FormatCode = lambda text, **kwargs: (text, False)

TINY_CLASSES = ('white_box', 'red_box')
# BGR colours per class: distinct so that a detector can actually learn them.
_CLASS_COLOURS = ((255, 255, 255), (40, 40, 255))


def _draw_image(rng: np.random.RandomState, size: int, max_objects: int):
    """One dark, noisy image with a few bright axis-aligned rectangles."""
    img = rng.randint(0, 40, (size, size, 3)).astype(np.uint8)
    objects = []
    for _ in range(rng.randint(1, max_objects + 1)):
        label = int(rng.randint(len(TINY_CLASSES)))
        w, h = rng.randint(size // 6, size // 2, size=2)
        x1, y1 = rng.randint(0, size - w), rng.randint(0, size - h)
        img[y1:y1 + h, x1:x1 + w] = _CLASS_COLOURS[label]
        objects.append((label, int(x1), int(y1), int(w), int(h)))
    return img, objects


def write_tiny_coco(root: Path,
                    num_images: int = 4,
                    size: int = 64,
                    max_objects: int = 3,
                    seed: int = 0) -> SimpleNamespace:
    """Write a synthetic COCO-format detection/instance dataset under ``root``.

    Layout: ``root/images/*.png`` and ``root/annotations/instances.json``. Each object carries
    a bbox (xywh) and its polygon mask, so detection and instance-segmentation pipelines can
    both read it.

    Returns:
        SimpleNamespace: ``data_root``, ``ann_file`` (relative to ``data_root``), ``img_prefix``,
        ``classes``, ``num_images``, ``size``.
    """
    rng = np.random.RandomState(seed)
    (root / 'images').mkdir(parents=True, exist_ok=True)
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for img_id in range(1, num_images + 1):
        img, objects = _draw_image(rng, size, max_objects)
        file_name = f'{img_id:04d}.png'
        cv2.imwrite(str(root / 'images' / file_name), img)
        images.append(dict(id=img_id, file_name=file_name, width=size, height=size))
        for label, x, y, w, h in objects:
            polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
            annotations.append(
                dict(id=len(annotations) + 1, image_id=img_id, category_id=label + 1,
                     bbox=[x, y, w, h], area=w * h, iscrowd=0, segmentation=[polygon]))
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(TINY_CLASSES)]
    ann_file = 'annotations/instances.json'
    with open(root / ann_file, 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return SimpleNamespace(data_root=str(root), ann_file=ann_file, img_prefix='images/',
                           classes=TINY_CLASSES, num_images=num_images, size=size)


@pytest.fixture(scope='session')
def tiny_coco(tmp_path_factory) -> SimpleNamespace:
    """A 4-image, 64x64, 2-class COCO-format dataset with polygon masks (session-wide)."""
    return write_tiny_coco(tmp_path_factory.mktemp('tiny_coco'))


@pytest.fixture(scope='session')
def shapes(tmp_path_factory) -> Path:
    """The shapes dataset of tests/data_helpers.py (4 train, 2 val images), session-wide;
    read-only: a test that adds files there has its own."""
    from tests.data_helpers import write_shapes
    return write_shapes(tmp_path_factory.mktemp('shapes'))


def _tiny_retinanet(num_classes: int) -> dict:
    """Stock mmdet RetinaNet shrunk to a few thousand parameters (ResNet-18, 8 base channels)."""
    return dict(
        type='RetinaNet',
        data_preprocessor=dict(
            type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32),
        backbone=dict(
            type='ResNet', depth=18, base_channels=8, stem_channels=8, num_stages=4,
            out_indices=(1, 2, 3), frozen_stages=-1, norm_cfg=dict(type='BN'),
            norm_eval=False, style='pytorch', init_cfg=None),
        neck=dict(type='FPN', in_channels=[16, 32, 64], out_channels=16, num_outs=3),
        bbox_head=dict(
            type='RetinaHead', num_classes=num_classes, in_channels=16, stacked_convs=1,
            feat_channels=16,
            anchor_generator=dict(
                type='AnchorGenerator', octave_base_scale=4, scales_per_octave=1,
                ratios=[1.0], strides=[8, 16, 32]),
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                          loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        train_cfg=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4,
                          min_pos_iou=0, ignore_iof_thr=-1),
            sampler=dict(type='PseudoSampler'), allowed_border=-1, pos_weight=-1,
            debug=False),
        test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.05,
                      nms=dict(type='nms', iou_threshold=0.5), max_per_img=20))


def build_tiny_det_cfg(data: SimpleNamespace,
                       work_dir: str,
                       max_epochs: int = 1,
                       batch_size: int = 2,
                       with_val: bool = False,
                       seed: int = 0,
                       deterministic: bool = True) -> Config:
    """A complete mmdet training config for the tiny RetinaNet on ``data``.

    No random augmentation and no dataloader workers, so that two runs with the same seed
    produce identical weights (the resume test depends on it).
    """
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(data.size, data.size), keep_ratio=True),
        dict(type='PackDetInputs'),
    ]
    test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(data.size, data.size), keep_ratio=True),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
    ]
    dataset = dict(
        type='CocoDataset', data_root=data.data_root, ann_file=data.ann_file,
        data_prefix=dict(img=data.img_prefix), metainfo=dict(classes=data.classes),
        filter_cfg=dict(filter_empty_gt=True, min_size=0), pipeline=pipeline)
    test_dataset = dict(copy.deepcopy(dataset), pipeline=test_pipeline, test_mode=True)
    test_dataloader = dict(
        batch_size=batch_size, num_workers=0, persistent_workers=False, drop_last=False,
        sampler=dict(type='DefaultSampler', shuffle=False), dataset=test_dataset)
    evaluator = dict(type='CocoMetric', ann_file=f'{data.data_root}/{data.ann_file}',
                     metric='bbox', format_only=False)
    cfg = dict(
        default_scope='mmdet',
        # A unique name keeps mmengine's global logger/visualizer instances of two runners
        # built in the same second apart.
        experiment_name=f'tiny_{uuid.uuid4().hex[:8]}',
        work_dir=str(work_dir),
        model=_tiny_retinanet(len(data.classes)),
        train_dataloader=dict(
            batch_size=batch_size, num_workers=0, persistent_workers=False,
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_sampler=dict(type='AspectRatioBatchSampler'), dataset=dataset),
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1),
        optim_wrapper=dict(
            type='OptimWrapper',
            optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4)),
        # Warmup by iteration, then a step by epoch: resuming must restore both states. An
        # explicit `end` (mmengine defaults it to max_epochs) keeps the schedule the same when
        # a run is continued with a larger max_epochs.
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3),
            dict(type='MultiStepLR', by_epoch=True, milestones=[1], gamma=0.5, begin=0,
                 end=1000),
        ],
        test_dataloader=test_dataloader,
        test_evaluator=evaluator,
        test_cfg=dict(type='TestLoop'),
        default_hooks=dict(
            timer=dict(type='IterTimerHook'),
            logger=dict(type='LoggerHook', interval=1),
            param_scheduler=dict(type='ParamSchedulerHook'),
            checkpoint=dict(type='CheckpointHook', interval=1),
            sampler_seed=dict(type='DistSamplerSeedHook'),
            visualization=dict(type='DetVisualizationHook')),
        env_cfg=dict(cudnn_benchmark=False,
                     mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
                     dist_cfg=dict(backend='nccl')),
        vis_backends=[dict(type='LocalVisBackend')],
        visualizer=dict(type='DetLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')]),
        log_processor=dict(type='LogProcessor', window_size=1, by_epoch=True),
        log_level='WARNING',
        load_from=None,
        resume=False,
        randomness=dict(seed=seed, deterministic=deterministic),
    )
    if with_val:
        cfg.update(val_dataloader=copy.deepcopy(test_dataloader), val_evaluator=evaluator,
                   val_cfg=dict(type='ValLoop'))
    return Config(cfg)


@pytest.fixture(scope='session')
def tiny_det_cfg_factory(tiny_coco) -> Callable[..., Config]:
    """Session-wide factory: ``factory(work_dir, **kwargs)`` -> fresh tiny RetinaNet config
    over :func:`tiny_coco` (kwargs go to :func:`build_tiny_det_cfg`). For module-scoped runs."""

    def factory(work_dir: str, **kwargs) -> Config:
        return build_tiny_det_cfg(tiny_coco, str(work_dir), **kwargs)

    return factory


@pytest.fixture
def tiny_det_cfg(tiny_det_cfg_factory, tmp_path) -> Callable[..., Config]:
    """Factory: ``tiny_det_cfg(work_dir=None, **kwargs)`` -> fresh tiny RetinaNet config;
    ``work_dir`` defaults to ``tmp_path / 'work_dir'``."""

    def factory(work_dir: Optional[str] = None, **kwargs) -> Config:
        return tiny_det_cfg_factory(work_dir or tmp_path / 'work_dir', **kwargs)

    return factory


watch_torch_threads()


@pytest.fixture(autouse=True)
def _restore_torch_global_state():
    """Runners with ``deterministic=True`` flip process-wide torch flags; undo them after each
    test so that they do not leak into unrelated tests."""
    det = torch.are_deterministic_algorithms_enabled()
    det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    threads = torch.get_num_threads()
    yield
    torch.use_deterministic_algorithms(det, warn_only=det_warn)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
    torch.set_num_threads(threads)


class _GcClock:
    """Seconds this process spent in full (generation 2) garbage collections."""

    def __init__(self) -> None:
        self.seconds, self.count, self._start = 0.0, 0, None

    def __call__(self, phase: str, info: dict) -> None:
        if info['generation'] != 2:
            return
        if phase == 'start':
            self._start = time.perf_counter()
        elif self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self.count, self._start = self.count + 1, None


_GC_CLOCK = _GcClock()
gc.callbacks.append(_GC_CLOCK)


@pytest.fixture(autouse=True)
def _young_garbage_only():
    """mmengine runs a full garbage collection each time it builds a dataset
    (``BaseDataset.serialize_data``), and a full collection walks every object of this
    long-lived process, the models and data of every earlier test, and in a forked tool it
    also writes to every page. After each test, collect its garbage once and freeze what
    survives (``gc.freeze``), so that later collections walk only what later tests create.
    Each test file's end unfreezes, so the garbage of its module fixtures is collected."""
    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(scope='module', autouse=True)
def _collect_module_garbage():
    yield
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def pytest_terminal_summary(terminalreporter):
    """How long full garbage collections took in this process (an xdist worker reports its
    own only in its log), to keep an eye on the cost :func:`_young_garbage_only` removes."""
    terminalreporter.write_line(f'full garbage collections: {_GC_CLOCK.count}, '
                                f'{_GC_CLOCK.seconds:.1f} s')


@pytest.fixture(autouse=True)
def _restore_default_scope():
    """A Runner or ``DefaultScope.get_instance`` leaves its scope current for the rest of the
    process, so a later test's registry lookups would depend on which tests ran before it in the
    same worker; put back the scopes that existed before each test."""
    scopes = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(scopes)


REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def run_tool() -> Callable[..., subprocess.CompletedProcess]:
    """``run_tool('tools/train.py', *args, env=None, timeout=540)``: run a repo script with
    this interpreter from the repo root and return the completed process (output captured).

    The default timeout stays under pytest-timeout's 600 s, so a stuck tool fails with its
    output rather than being killed silently; it is large because a loaded shared machine can
    stretch a 10 s run several-fold.

    ``.py`` scripts run under ``sys.executable``; others (``.sh``) under bash with
    ``PYTHON=sys.executable``. Single-threaded (as ``make test`` runs), a ``.py`` script runs in
    a fork of the test process instead, which has done the imports (tests/forked_tool.py);
    ``EFFDET_TEST_SUBPROCESS=1`` starts every tool in a new interpreter.
    """

    def run(script: str, *args, env: Optional[dict] = None, timeout: float = 540):
        # the tool computes with as many threads as this process, so results a test compares
        # with an in-process run are computed alike (kernels depend on the thread count)
        full_env = dict(os.environ, PYTHON=sys.executable, PYTHONUNBUFFERED='1',
                        OMP_NUM_THREADS=str(torch.get_num_threads()))
        full_env.update(env or {})
        args = [str(a) for a in args]
        if script.endswith('.py') and can_fork(full_env):
            return run_forked(REPO_ROOT / script, args, full_env, REPO_ROOT, timeout)
        cmd = [sys.executable] if script.endswith('.py') else ['bash']
        return subprocess.run(cmd + [str(REPO_ROOT / script)] + args, cwd=REPO_ROOT,
                              env=full_env, capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture(scope='session')
def run_tool_ok(run_tool) -> Callable[..., str]:
    """``run_tool_ok(script, *args, timeout=540)``: :func:`run_tool` that must exit 0 (else
    the test fails with the end of its output); returns stdout + stderr."""

    def run(script: str, *args, timeout: float = 540) -> str:
        proc = run_tool(script, *args, timeout=timeout)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        return proc.stdout + proc.stderr

    return run


class LogMessages(logging.Handler):
    """Keeps the message of every record at ``level`` or above in ``messages``.

    mmengine's loggers do not propagate to the root logger, so pytest's ``caplog`` misses them.
    """

    def __init__(self, level: int = logging.NOTSET):
        super().__init__(level)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def log_messages(logger: Optional[logging.Logger] = None,
                 level: int = logging.NOTSET) -> Iterator[List[str]]:
    """The messages ``logger`` (default: mmengine's current logger) emits inside the block."""
    logger = logger or MMLogger.get_current_instance()
    handler = LogMessages(level)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


@pytest.fixture(scope='session')
def trained_demo(tmp_path_factory, run_tool) -> SimpleNamespace:
    """``scripts/demo.sh`` run once per session into a temporary work dir (``DEMO_FORCE=1``:
    trained anew; the data and ImageNet weights it prepares under data/ and checkpoints/ are
    reused): ``work_dir``, ``checkpoint`` (the one last_checkpoint names), ``proc``.

    Trains 400 iterations of EfficientDet-Lite0 (about 4 min on 2 idle cores): slow tests only,
    each with a timeout that covers it.
    """
    work_dir = tmp_path_factory.mktemp('demo') / 'work_dir'
    proc = run_tool('scripts/demo.sh', env=dict(DEMO_WORK_DIR=str(work_dir), DEMO_FORCE='1'),
                    timeout=3000)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    name = (work_dir / 'last_checkpoint').read_text().strip()
    return SimpleNamespace(work_dir=work_dir, checkpoint=work_dir / Path(name).name, proc=proc)
