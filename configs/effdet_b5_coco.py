_base_ = './_base_/effdet_coco.py'
# EfficientDet-D5: EfficientNet-B5 backbone.
from effdet_plugin.engine.variant_config import effdet_variant  # after _base_: not lazy

globals().update(effdet_variant('d5', _base_))
