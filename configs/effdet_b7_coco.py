_base_ = './_base_/effdet_coco.py'
# EfficientDet-D7: D6 at a larger input, anchor scale 5; 600 epochs (official).
from effdet_plugin.engine.variant_config import effdet_variant  # after _base_: not lazy

globals().update(effdet_variant('d7', _base_, max_epochs=600))
