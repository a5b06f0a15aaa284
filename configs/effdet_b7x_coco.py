_base_ = './effdet_b7_coco.py'
# EfficientDet-D7x: D7 with an EfficientNet-B7 backbone and levels P3-P8.
from effdet_plugin.engine.variant_config import effdet_variant  # after _base_: not lazy

globals().update(effdet_variant('d7x', _base_))
