_base_ = './_base_/effdet_lite_coco.py'
# EfficientDet-Lite0: EfficientNet-Lite0 backbone (see the Lite base).
from effdet_plugin.engine.variant_config import effdet_variant  # after _base_: not lazy

globals().update(effdet_variant('lite0', _base_))
