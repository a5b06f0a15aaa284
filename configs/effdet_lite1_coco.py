_base_ = './_base_/effdet_lite_coco.py'
# EfficientDet-Lite1: EfficientNet-Lite1 backbone (see the Lite base).
from effdet_plugin.engine.variant_config import effdet_variant  # after _base_: not lazy

globals().update(effdet_variant('lite1', _base_))
