# RetinaNet with an EfficientNet-B0 backbone: mmdet's R-50 config with the backbone swapped
# (effnet_fpn_backbone: EffNet at strides 4-32, the FPN's in_channels from what it outputs).
# ImageNet weights (optional): convert torchvision's efficientnet_b0 state dict with
#   python tools/convert_weights.py efficientnet_b0.pth checkpoints/efficientnet_b0_torchvision.pth
# When the file is absent (paths are relative to the working directory), the backbone keeps
# its default Kaiming init. BN eps 1e-5 matches torchvision's b0-b4 weights.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
from effdet_plugin.engine.variant_config import effnet_fpn_backbone  # after _base_: not lazy

custom_imports = dict(imports=['effdet_plugin'], allow_failed_imports=False)
effnet_checkpoint = 'checkpoints/efficientnet_b0_torchvision.pth'
model = effnet_fpn_backbone('b0', effnet_checkpoint)
