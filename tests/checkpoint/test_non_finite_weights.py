"""The converters refuse weights holding NaN/inf, naming the tensors, and write nothing."""
import effdet
import torch
import torchvision

from effdet_plugin.cli import convert_effdet_weights, convert_weights


def _poison(state_dict: dict, key: str, value: float) -> dict:
    state_dict = dict(state_dict)
    state_dict[key] = state_dict[key].clone()
    state_dict[key].view(-1)[3] = value
    return state_dict


def test_convert_weights_refuses_nan(tmp_path, capsys):
    state = torchvision.models.efficientnet_b0().state_dict()
    src, dst = tmp_path / 'b0_nan.pth', tmp_path / 'out' / 'b0.pth'
    torch.save(_poison(state, 'features.1.0.block.0.0.weight', float('nan')), src)
    assert convert_weights.main([str(src), str(dst)]) == 1
    err = capsys.readouterr().err
    assert f'converted weights for {dst}: 1 tensor(s) hold NaN/inf values' in err
    assert '(1 NaN, 0 inf of 288)' in err  # named by its converted (EffNet) key
    assert not dst.exists()


def test_convert_effdet_weights_refuses_inf(tmp_path, capsys):
    model = effdet.create_model('tf_efficientdet_lite0', pretrained=False,
                                pretrained_backbone=False)
    src = tmp_path / 'tf_efficientdet_lite0_inf.pth'
    dst = tmp_path / 'lite0.pth'
    torch.save(_poison(model.state_dict(), 'fpn.cell.0.fnode.0.after_combine.conv.conv_pw.weight',
                       float('-inf')), src)
    assert convert_effdet_weights.main([str(src), str(dst)]) == 1
    err = capsys.readouterr().err
    assert '1 tensor(s) hold NaN/inf values: neck.' in err and '(0 NaN, 1 inf of' in err
    assert not dst.exists()
