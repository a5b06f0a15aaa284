# Faster R-CNN with an EfficientNet-B0 backbone: mmdet's R-50 config with the backbone swapped.
# Weights and init: see retinanet_effnet-b0_fpn_1x_coco.py.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
from effdet_plugin.engine.variant_config import effnet_fpn_backbone  # after _base_: not lazy

custom_imports = dict(imports=['effdet_plugin'], allow_failed_imports=False)
effnet_checkpoint = 'checkpoints/efficientnet_b0_torchvision.pth'
model = effnet_fpn_backbone('b0', effnet_checkpoint)  # P2-P5 for the RPN's stride 4-64 anchors
