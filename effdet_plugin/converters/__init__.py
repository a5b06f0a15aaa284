"""Weight converters from other EfficientNet implementations into effdet_plugin's models."""
from .efficientnet import (LAYOUTS, SOURCES, ArchMismatchError, ConversionResult,
                           classifier_weights, convert_efficientnet,
                           convert_effnet_pytorch_efficientnet, convert_timm_efficientnet,
                           convert_torchvision_efficientnet, detect_format, infer_arch,
                           recommended_backbone_cfg)
from .loading import (CheckpointReadError, convert_lite0_package, lite0_package_weights,
                      load_pretrained, read_checkpoint, save_converted, unwrap_state_dict)

__all__ = [
    'LAYOUTS', 'SOURCES', 'ArchMismatchError', 'CheckpointReadError', 'ConversionResult',
    'classifier_weights', 'convert_efficientnet', 'convert_effnet_pytorch_efficientnet',
    'convert_lite0_package', 'convert_timm_efficientnet', 'convert_torchvision_efficientnet',
    'detect_format', 'infer_arch', 'lite0_package_weights', 'load_pretrained',
    'read_checkpoint', 'recommended_backbone_cfg', 'save_converted', 'unwrap_state_dict'
]
