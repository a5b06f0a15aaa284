"""EffDetHead predicts under fp16 / bf16 autocast: the official soft-NMS (an mmcv kernel that
takes float32 only) gets float32 boxes and scores."""
import torch

from effdet_plugin.models.dense_heads import EffDetHead
from tests.models.head_settings import official_settings


def test_soft_nms_prediction_under_bf16_autocast():
    torch.manual_seed(0)
    head = EffDetHead(num_classes=3, in_channels=16, stacked_convs=1, **official_settings()).eval()
    assert head.test_cfg.nms.type == 'soft_nms'
    feats = [torch.randn(1, 16, 256 // s, 256 // s) for s in (8, 16, 32, 64, 128)]
    metas = [dict(img_shape=(256, 256), ori_shape=(256, 256), scale_factor=(1., 1.))]
    with torch.no_grad():
        with torch.autocast('cpu', dtype=torch.bfloat16):
            half = head.predict_by_feat(*head(feats), batch_img_metas=metas)[0]
    assert half.bboxes.dtype == torch.float32 and len(half) > 0
