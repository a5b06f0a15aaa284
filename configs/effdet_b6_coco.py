_base_ = './_base_/effdet_coco.py'
# EfficientDet-D6: EfficientNet-B6 backbone, sum fusion.
from effdet_plugin.engine.variant_config import effdet_variant  # after _base_: not lazy

globals().update(effdet_variant('d6', _base_))
