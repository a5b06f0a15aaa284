# Nuclei detection: EfficientDet-Lite0 (ImageNet backbone) fine-tuned on the nuclei tiles with
# medical loading + albumentations, COCO bbox AP on the held-out strip. CPU, 300 iterations.
_base_ = ['./_base_/models/effdet_lite0.py', './_base_/nuclei_instance.py',
          './_base_/finetune_cpu.py']
val_evaluator = dict(metric='bbox')
test_evaluator = val_evaluator
