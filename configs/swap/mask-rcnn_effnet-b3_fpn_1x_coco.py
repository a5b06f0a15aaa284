# Mask R-CNN with an EfficientNet-B3 backbone: mmdet's R-50 config with the backbone swapped.
# ImageNet weights (optional): convert torchvision's efficientnet_b3 state dict with
#   python tools/convert_weights.py efficientnet_b3.pth checkpoints/efficientnet_b3_torchvision.pth
# Without the file the backbone keeps its default init (see retinanet_effnet-b0_fpn_1x_coco.py).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
from effdet_plugin.engine.variant_config import effnet_fpn_backbone  # after _base_: not lazy

custom_imports = dict(imports=['effdet_plugin'], allow_failed_imports=False)
effnet_checkpoint = 'checkpoints/efficientnet_b3_torchvision.pth'
model = effnet_fpn_backbone('b3', effnet_checkpoint, drop_path_rate=0.3)
