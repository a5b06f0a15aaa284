"""Everything that reads, writes, converts or checks weights: converters from other
EfficientNet / EfficientDet implementations, the weights check, crash-safe writes and the
``weights_only`` allow-list for mmengine checkpoints. Imports models/ only."""
from .checkpoint_io import (
    LITE_PACKAGES,
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
from .weights_check import NonFiniteWeightsError, WeightsMismatchError

__all__ = [
    'IMAGENET_MEAN', 'IMAGENET_STD', 'LAYOUTS', 'LITE_MEAN', 'LITE_PACKAGES', 'LITE_STD',
    'NonFiniteWeightsError', 'WeightsMismatchError',
    'SOURCES', 'ArchMismatchError', 'CheckpointReadError', 'ConversionResult',
    'convert_effdet_state_dict', 'convert_efficientnet', 'convert_lite_package',
    'detect_format', 'expected_preprocessing', 'infer_arch', 'lite_package_weights',
    'read_checkpoint', 'save_checkpoint', 'unwrap_state_dict'
]
