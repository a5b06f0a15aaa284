"""Weight converters from other EfficientNet implementations into effdet_plugin's models."""
from .efficientnet import (
                           IMAGENET_MEAN,
                           IMAGENET_STD,
                           LAYOUTS,
                           LITE_MEAN,
                           LITE_STD,
                           SOURCES,
                           ArchMismatchError,
                           ConversionResult,
                           classifier_weights,
                           convert_efficientnet,
                           convert_effnet_pytorch_efficientnet,
                           convert_timm_efficientnet,
                           convert_torchvision_efficientnet,
                           detect_format,
                           expected_preprocessing,
                           infer_arch,
                           recommended_backbone_cfg,
)
from .loading import (
                           LITE_PACKAGES,
                           CheckpointReadError,
                           checkpoint_preprocessing,
                           convert_lite_package,
                           lite_package_weights,
                           load_pretrained,
                           preprocessing_mismatch,
                           read_checkpoint,
                           save_converted,
                           unwrap_state_dict,
)

__all__ = [
    'IMAGENET_MEAN', 'IMAGENET_STD', 'LAYOUTS', 'LITE_MEAN', 'LITE_PACKAGES', 'LITE_STD',
    'SOURCES', 'ArchMismatchError', 'CheckpointReadError', 'ConversionResult',
    'checkpoint_preprocessing', 'classifier_weights', 'convert_efficientnet',
    'convert_effnet_pytorch_efficientnet', 'convert_lite_package', 'convert_timm_efficientnet',
    'convert_torchvision_efficientnet', 'detect_format', 'expected_preprocessing',
    'infer_arch', 'lite_package_weights', 'load_pretrained', 'preprocessing_mismatch',
    'read_checkpoint', 'recommended_backbone_cfg', 'save_converted', 'unwrap_state_dict'
]
