_base_ = './_base_/effdet_coco.py'
# EfficientDet-D0: EfficientNet-B0 backbone, BiFPN and head of D0, 512 input.
from effdet_plugin.engine.variant_config import effdet_variant  # after _base_: not lazy

globals().update(effdet_variant('d0', _base_))
