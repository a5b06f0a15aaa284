"""Convert official EfficientDet COCO weights (efficientdet-pytorch) into our checkpoints.

Examples::

    # a downloaded release file, e.g. from github.com/rwightman/efficientdet-pytorch/releases
    python tools/convert_effdet_weights.py tf_efficientdet_d0_34-f153e0cf.pth \\
        checkpoints/effdet_d0_coco.pth
    # let effdet download the weights first (needs internet and `pip install effdet`)
    python tools/convert_effdet_weights.py --from-effdet tf_efficientdet_d0 \\
        checkpoints/effdet_d0_coco.pth
    # keep the 90 official class slots instead of mmdet's 80 COCO classes
    python tools/convert_effdet_weights.py SRC DST --num-classes 90

The output is ``{'state_dict', 'meta'}`` with ``backbone.``/``neck.``/``bbox_head.`` keys for
``SingleStageDetector`` (:func:`convert_effdet_checkpoint`); the script prints the config to
use and any settings it needs. ``meta['preprocessing']`` records the input the weights were
trained on, which ``PretrainedInputCheckHook`` compares with a training config.

COCO classes: the official models predict 90 slots, slot ``i`` = category id ``i + 1`` (ten
ids have no annotations). mmdet's 80 labels are the used ids in increasing order
(:data:`COCO80_CATEGORY_IDS`), so by default (``--num-classes 80``) the class predictor keeps,
per anchor, the rows of slots ``id - 1`` and the checkpoint works with the config as it is;
``--num-classes 90`` keeps all slots.
"""
import argparse
import os.path as osp
import sys

import torch

from ..checkpoint import checkpoint_io, effdet_release


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert efficientdet-pytorch EfficientDet weights for our configs.')
    parser.add_argument('src', nargs='?', help='effdet checkpoint (.pth)')
    parser.add_argument('dst', help='output checkpoint (.pth)')
    parser.add_argument('--from-effdet', metavar='NAME', default=None,
                        help='create effdet model NAME with pretrained=True (downloads) and '
                        'convert it; then give only DST')
    parser.add_argument('--name', default=None,
                        help='effdet model name (tf_efficientdet_d0 ...); read from the file '
                        'name, or inferred from the weights, when omitted')
    parser.add_argument('--num-classes', type=int, default=80, choices=(80, 90),
                        help="80: mmdet's COCO classes (default); 90: the official slots")
    args = parser.parse_args(argv)
    if args.from_effdet is None and args.src is None:
        parser.error('give SRC DST, or --from-effdet NAME DST')
    if args.from_effdet is not None and args.src is not None:
        parser.error('--from-effdet takes only DST')
    return args


def _guess_name(src: str):
    """The file name when it names an effdet model (release files do), else None."""
    try:
        effdet_release.parse_effdet_name(src)
        return src
    except ValueError:
        return None


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.from_effdet:
            name = args.name or args.from_effdet
            state_dict = effdet_release.load_effdet_weights(args.from_effdet)
        else:
            if not osp.isfile(args.src):
                raise FileNotFoundError(
                    f'{args.src!r} does not exist. The official weights are the '
                    f'tf_efficientdet_*.pth files of the efficientdet-pytorch GitHub releases '
                    f'(or use --from-effdet NAME).')
            name = args.name or _guess_name(args.src)
            # training checkpoints: the EMA weights when present
            state_dict = checkpoint_io.unwrap_state_dict(checkpoint_io.read_checkpoint(args.src))
        checkpoint = effdet_release.convert_effdet_checkpoint(state_dict, name=name,
                                                              num_classes=args.num_classes)
        # refuses NaN/inf weights (a ValueError)
        checkpoint_io.save_checkpoint(checkpoint, args.dst)
    except (checkpoint_io.CheckpointReadError, FileNotFoundError, KeyError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    meta = checkpoint['meta']
    params = sum(v.numel() for k, v in checkpoint['state_dict'].items()
                 if isinstance(v, torch.Tensor) and not k.endswith(
                     ('running_mean', 'running_var', 'num_batches_tracked')))
    print(f'EfficientDet-{meta["variant"].upper()}: {len(checkpoint["state_dict"])} tensors, '
          f'{params / 1e6:.3f}M parameters, {meta["num_classes"]} classes '
          f'({meta["class_mapping"]})')
    print(f'wrote {args.dst}')
    options = ' '.join(f'{k}={v}'.replace(' ', '') for k, v in meta['cfg_options'].items())
    print(f'config: {meta["config"]}')
    pre = meta['preprocessing']
    print(f"input:  mean={pre['mean']}, std={pre['std']}, bgr_to_rgb={pre['to_rgb']} (as the "
          f'weights were trained; PretrainedInputCheckHook warns on a config that differs)')
    if options:
        print(f'with:   --cfg-options {options}')
    print(f'e.g.    python tools/test.py {meta["config"]} {args.dst}' +
          (f' --cfg-options {options}' if options else ''))
    return 0

