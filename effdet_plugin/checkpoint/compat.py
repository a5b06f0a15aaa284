"""Let ``weights_only`` ``torch.load`` (the default since torch 2.6) read mmengine checkpoints.

Only our loaders use it (:mod:`.checkpoint_io`, :mod:`.loading`,
:class:`effdet_plugin.engine.CheckedRunner`), through :func:`mmengine_globals_allowed`: the
allow-list is active while they read and torch's list is left as it was afterwards, so
``import effdet_plugin`` changes nothing in torch.

mmengine 0.10.7 calls ``torch.load(filename, map_location=...)`` without ``weights_only``, so
on torch >= 2.6 resuming fails with ``Unsupported global: ...HistoryBuffer``. Instead of turning
``weights_only`` off (which would let a checkpoint run arbitrary code), we allow-list exactly
the few non-tensor types that mmengine / mmdet checkpoints carry. The list was found by saving
real checkpoints (training, validation, AMP) and reading them with
``torch.serialization.get_unsafe_globals_in_checkpoint``:

- ``message_hub.log_scalars`` holds :class:`HistoryBuffer` objects whose pickled state keeps
  their statistics methods as ``getattr(HistoryBuffer, 'min')``, i.e. a ``builtins.getattr``
  global. ``getattr`` itself is never allowed: a restricted stand-in, registered under that
  name, only returns HistoryBuffer's statistics methods.
- HistoryBuffer stores numpy arrays (float64 values, int64 counts), and metric values in
  ``runtime_info`` may be numpy scalars: ``ndarray``, ``dtype``, numpy's ``_reconstruct`` /
  ``scalar`` rebuild functions (under numpy 1.x and 2.x module paths, so checkpoints written
  under either load) and the concrete numeric / bool dtype classes that ``BUILD`` checks.
- ``OrderedDict`` and ``Counter`` (optimizer and ``MultiStepLR`` state) are allowed by torch
  already.
"""
import pickle
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

# HistoryBuffer's built-in statistics; custom ones registered later are accepted too.
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')
# Plain numeric / bool dtypes only: no object, string or void dtypes.
_NUMPY_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32',
                 'uint64', 'float16', 'float32', 'float64')

SafeGlobal = Union[Callable, Tuple[Callable, str]]


def history_buffer_getattr(obj: Any, name: str) -> Callable:
    """Stand-in for ``builtins.getattr`` during ``weights_only`` loads.

    Only ``getattr(HistoryBuffer, <statistics method>)`` is honoured, which is how pickle
    writes ``HistoryBuffer.min`` and friends; anything else raises, so a malicious checkpoint
    cannot use it to reach other attributes (``__globals__``, ``__init__``, ...).

    Args:
        obj (Any): Object whose attribute is requested.
        name (str): Attribute name.

    Returns:
        Callable: The statistics method ``HistoryBuffer.<name>``.
    """
    allowed = set(_HISTORY_BUFFER_METHODS) | set(HistoryBuffer._statistics_methods)
    if obj is not HistoryBuffer or name not in allowed:
        raise pickle.UnpicklingError(
            f'weights_only load: getattr({obj!r}, {name!r}) is not allowed; only '
            f'HistoryBuffer statistics methods {sorted(allowed)} may be looked up.')
    return getattr(HistoryBuffer, name)


def _numpy_multiarray():
    """numpy's ``multiarray`` module: ``numpy._core`` on numpy 2.x, ``numpy.core`` on 1.x."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    return multiarray


def mmengine_safe_globals() -> List[SafeGlobal]:
    """The allow-list for mmengine / mmdet checkpoints.

    Returns:
        list: Entries for :func:`torch.serialization.add_safe_globals`; ``(obj, name)`` tuples
        register an object under the path a checkpoint refers to it by.
    """
    multiarray = _numpy_multiarray()
    safe: List[SafeGlobal] = [HistoryBuffer, (history_buffer_getattr, 'builtins.getattr'),
                              np.ndarray, np.dtype]
    for fn in (multiarray._reconstruct, multiarray.scalar):
        # Checkpoints name these after the numpy that wrote them.
        safe += [(fn, f'numpy._core.multiarray.{fn.__name__}'),
                 (fn, f'numpy.core.multiarray.{fn.__name__}')]
    safe += [type(np.dtype(name)) for name in _NUMPY_DTYPES]
    return safe


@contextmanager
def mmengine_globals_allowed() -> Iterator[None]:
    """Allow-list :func:`mmengine_safe_globals` for ``torch.load(weights_only=True)`` calls
    inside the ``with`` block (torch's ``safe_globals`` context; its list is restored after).
    """
    with torch.serialization.safe_globals(mmengine_safe_globals()):
        yield
