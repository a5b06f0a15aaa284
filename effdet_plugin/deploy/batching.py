"""Images in batches for ``tools/infer.py``: read and prepared in DataLoader worker processes,
then batched by network-input shape so that a batch of any size gives the detections of
batch 1 (padding an image to a larger batch shape would change the features near its edges).
"""
from typing import Callable, Dict, Hashable, Iterable, Iterator, List, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


class PreparedImages(Dataset):
    """``files`` read by ``load`` and turned into model input by ``prepare``, item by item.

    An item is a dict: ``file``; ``error`` (why the file could not be read) or ``key`` (the
    network-input shape: items of one key batch together) with what ``prepare`` returned; and
    with ``keep_image`` the decoded image (for drawing).

    Args:
        files (Sequence[str]): Image paths.
        load (Callable): ``load(path) -> np.ndarray``, the decoded image.
        prepare (Callable): ``prepare(img) -> dict`` holding ``key``.
        keep_image (bool): Keep the decoded image in the item. Defaults to False.
    """

    def __init__(self, files: Sequence[str], load: Callable, prepare: Callable,
                 keep_image: bool = False) -> None:
        self.files, self.load, self.prepare, self.keep_image = files, load, prepare, keep_image

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path = self.files[index]
        try:
            img = self.load(path)
        except Exception as e:  # an unreadable file must not cost the other images
            return dict(file=path, error=f'{type(e).__name__}: {e}')
        item = dict(file=path, **self.prepare(img))
        if self.keep_image:
            item['image'] = img
        return item


def _as_is(item: dict) -> dict:
    return item


def prepared_loader(dataset: PreparedImages, workers: int) -> DataLoader:
    """Items of ``dataset`` in order, prepared by ``workers`` processes (0: in this one)."""
    return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers,
                      collate_fn=_as_is, persistent_workers=False)


class ShapeBatcher:
    """Collects items into batches of one ``key`` (input shape), up to ``batch_size`` each.

    Items wait per shape until their batch is full. So that memory does not grow with many
    distinct shapes, once more than ``max_waiting`` items wait the largest partial batch goes.

    Args:
        batch_size (int): Images per batch.
        max_waiting (int, optional): Waiting items that force a partial batch out.
            Defaults to ``4 * batch_size``.
    """

    def __init__(self, batch_size: int, max_waiting: int = 0) -> None:
        self.batch_size = batch_size
        self.max_waiting = max_waiting or 4 * batch_size
        self.waiting: Dict[Hashable, List[dict]] = {}

    def add(self, item: dict) -> List[List[dict]]:
        """Queue ``item``; returns the batches that are ready (none, or one)."""
        group = self.waiting.setdefault(item['key'], [])
        group.append(item)
        if len(group) >= self.batch_size:
            return [self.waiting.pop(item['key'])]
        if sum(map(len, self.waiting.values())) > self.max_waiting:
            largest = max(self.waiting, key=lambda k: len(self.waiting[k]))
            return [self.waiting.pop(largest)]
        return []

    def flush(self) -> List[List[dict]]:
        """The partial batches still waiting."""
        batches, self.waiting = list(self.waiting.values()), {}
        return batches


def prepared_batches(loader: Iterable[dict], batch_size: int,
                     on_error: Callable[[dict], None]) -> Iterator[List[dict]]:
    """Batches of one input shape from the items of ``loader``; an item that could not be
    read goes to ``on_error`` instead."""
    batcher = ShapeBatcher(batch_size)
    for item in loader:
        if 'error' in item:
            on_error(item)
            continue
        yield from batcher.add(item)
    yield from batcher.flush()


def padded_shape(shape: Sequence[int], divisor: int) -> tuple:
    """``(h, w)`` rounded up to multiples of ``divisor`` (what the data preprocessor pads to)."""
    return tuple(-(-int(s) // divisor) * divisor for s in shape) if divisor else tuple(shape)


class PytorchPreparer:
    """``prepare`` of :class:`PreparedImages` for an mmdet model: the config's test pipeline
    (after loading), keyed by the padded input shape.

    Args:
        pipeline (Callable): The test pipeline starting with ``LoadImageFromNDArray``.
        pad_size_divisor (int): The data preprocessor's ``pad_size_divisor``.
    """

    def __init__(self, pipeline: Callable, pad_size_divisor: int) -> None:
        self.pipeline, self.divisor = pipeline, pad_size_divisor

    def __call__(self, img: np.ndarray) -> dict:
        data = self.pipeline(dict(img=img, img_id=0))
        return dict(key=padded_shape(data['inputs'].shape[-2:], self.divisor),
                    inputs=data['inputs'], data_sample=data['data_samples'])


def predict_pytorch(model, batch: List[dict]) -> list:
    """``DetDataSample`` predictions of a batch of :class:`PytorchPreparer` items."""
    data = dict(inputs=[item['inputs'] for item in batch],
                data_samples=[item['data_sample'] for item in batch])
    with torch.no_grad():
        return model.test_step(data)


class OnnxPreparer:
    """``prepare`` of :class:`PreparedImages` for an exported file: its :func:`preprocess`.

    Args:
        preprocess_args (dict): ``OnnxRuntimeDetector.preprocess_args``.
    """

    def __init__(self, preprocess_args: dict) -> None:
        self.preprocess_args = preprocess_args

    def __call__(self, img: np.ndarray) -> dict:
        from .preprocess import preprocess
        batch, meta = preprocess(img, **self.preprocess_args)
        return dict(key=batch.shape[2:], input=batch, meta=meta)


def predict_onnx(detector, batch: List[dict]) -> list:
    """``DetDataSample`` predictions of a batch of :class:`OnnxPreparer` items."""
    from .onnxruntime_detector import as_datasample
    dets = detector.run_batch(np.concatenate([item['input'] for item in batch]),
                              [item['meta'] for item in batch])
    return [as_datasample(det, item['meta']['ori_shape']) for det, item in zip(dets, batch)]
