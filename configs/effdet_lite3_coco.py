_base_ = './_base_/effdet_lite_coco.py'
# EfficientDet-Lite3: EfficientNet-Lite3 backbone (see the Lite base).
from effdet_plugin.engine.variant_config import effdet_variant  # after _base_: not lazy

globals().update(effdet_variant('lite3', _base_))
