"""Everything that reads, writes, converts or checks weights: converters from other
EfficientNet / EfficientDet implementations, the checked load path and the weights check,
crash-safe writes and the ``weights_only`` allow-list for mmengine checkpoints. Importing it
changes nothing in mmengine or torch. Imports models/ only; engine/, cli/ and tools/ import it,
models/ and datasets/ may not."""
from .checkpoint_io import (
    LITE_PACKAGES,
    CheckpointNotFoundError,
    CheckpointReadError,
    convert_lite_package,
    lite_package_weights,
    read_checkpoint,
    save_checkpoint,
    unwrap_state_dict,
)
from .efficientdet import convert_effdet_state_dict
from .efficientnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE_MEAN,
    LITE_STD,
    ConversionResult,
    convert_efficientnet,
    expected_preprocessing,
)
from .layouts import LAYOUTS, SOURCES, ArchMismatchError, detect_format, infer_arch
from .loading import check_checkpoint, load_checkpoint, read_checkpoint_file
from .weights_check import (
    NonFiniteWeightsError,
    WeightsCheckSettings,
    WeightsError,
    WeightsMismatchError,
    check_state_dict,
)

__all__ = [
    'IMAGENET_MEAN', 'IMAGENET_STD', 'LAYOUTS', 'LITE_MEAN', 'LITE_PACKAGES', 'LITE_STD',
    'NonFiniteWeightsError', 'WeightsCheckSettings', 'WeightsError', 'WeightsMismatchError',
    'SOURCES', 'ArchMismatchError', 'CheckpointNotFoundError', 'CheckpointReadError',
    'ConversionResult', 'check_checkpoint', 'check_state_dict', 'load_checkpoint',
    'read_checkpoint_file',
    'convert_effdet_state_dict', 'convert_efficientnet', 'convert_lite_package',
    'detect_format', 'expected_preprocessing', 'infer_arch', 'lite_package_weights',
    'read_checkpoint', 'save_checkpoint', 'unwrap_state_dict'
]
