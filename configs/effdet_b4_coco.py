_base_ = './_base_/effdet_coco.py'
# EfficientDet-D4: EfficientNet-B4 backbone.
from effdet_plugin.engine.variant_config import effdet_variant  # after _base_: not lazy

globals().update(effdet_variant('d4', _base_))
