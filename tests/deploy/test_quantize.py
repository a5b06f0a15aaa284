"""int8 quantisation (tools/deploy/quantize_onnx.py): the demo model with random weights that
predict like a trained model's, calibrated on a few generated images.

A random network is much harder to quantise than a trained one: its BN layers rescale sums
whose terms mostly cancel, so the int8 rounding grows through the layers (class maps correlate
0.68-0.99 with the float ones here, 0.98-0.99 for the trained shapes model of docs/deploy.md).
The bounds below would catch a broken quantisation (correlation near 0), not measure accuracy;
the AP figures of trained models are in docs/deploy.md.
"""
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from effdet_plugin.deploy import infer, preprocess, quantize
from effdet_plugin.deploy.onnx_export import export_onnx, preprocess_metadata
from tests.conftest import TINY_CLASSES, write_tiny_coco

DEMO = Path(__file__).resolve().parents[2] / 'configs/demo/effdet_lite0_nuclei.py'
SHAPE = (128, 128)


@pytest.fixture(scope='module')
def exported(tmp_path_factory, random_detector):
    """6 generated 128x128 images as the training data of a 2-class demo config with hard NMS,
    the random-weight model exported with NMS (``model.onnx``) and without (``raw.onnx``),
    quantised on 4 of the images by the command's main(): the first with its defaults (the
    box subnet float), the second whole (``--keep-float none``)."""
    root = tmp_path_factory.mktemp('int8')
    data = write_tiny_coco(root / 'data', num_images=6, size=SHAPE[0], max_objects=4)
    config = root / 'demo_2cls.py'
    config.write_text(
        f"_base_ = '{DEMO}'\n"
        "model = dict(bbox_head=dict(num_classes=2), test_cfg=dict(nms=dict(\n"
        "    _delete_=True, type='nms', iou_threshold=0.5)))\n"
        f"data = dict(root='{data.data_root}/', train_ann='{data.ann_file}',\n"
        f"            val_ann='{data.ann_file}', img_prefix=['images/'],\n"
        f"            classes={list(TINY_CLASSES)})\n")
    img = cv2.imread(str(root / 'data/images/0001.png'))
    cfg, model = random_detector(config)
    batch, _ = preprocess(img, cfg.model.data_preprocessor.mean, cfg.model.data_preprocessor.std)
    # BN statistics need a P7 map of more than one pixel: the image tiled to 256x256
    from effdet_plugin.deploy.random_weights import realistic_random_detector
    realistic_random_detector(model, torch.from_numpy(np.tile(batch, (1, 1, 2, 2))))
    files = {}
    for name, with_nms in (('model', True), ('raw', False)):
        files[name] = root / f'{name}.onnx'
        export_onnx(model, str(files[name]), SHAPE, with_nms=with_nms,
                    metadata=preprocess_metadata(cfg, SHAPE, TINY_CLASSES))
        files[f'{name}_int8'] = root / f'{name}.int8.onnx'
        keep = [] if with_nms else ['--keep-float', 'none']
        quantize.main([str(files[name]), '--config', str(config), '--calib-images', '4'] + keep)
    return dict(files, config=config, batch=batch, image=root / 'data/images/0001.png')


def run(path, batch):
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return session, dict(zip([o.name for o in session.get_outputs()],
                             session.run(None, {'input': batch})))


def test_int8_file_is_quantised_network_with_float_postprocessing(exported):
    float_file, int8_file = exported['model'], exported['model_int8']
    assert int8_file.is_file()
    assert int8_file.stat().st_size < 0.4 * float_file.stat().st_size
    model = onnx.load(str(int8_file))
    ops = [node.op_type for node in model.graph.node]
    assert ops.count('QuantizeLinear') > 100 and ops.count('DequantizeLinear') > 100
    consts = {init.name: init for init in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    # every conv weight but the box subnet's is stored as int8 and dequantised per output
    # channel; the box subnet (the default --keep-float) keeps float weights
    convs = [node for node in model.graph.node if node.op_type == 'Conv']
    box = [conv for conv in convs if conv.name.startswith(quantize.BOX_BRANCH_PREFIX)]
    assert 0 < len(box) < len(convs) // 2
    for conv in convs:
        if conv in box:
            assert conv.input[1] in consts and conv.input[1] not in producer
            continue
        dq = producer[conv.input[1]]
        assert dq.op_type == 'DequantizeLinear'
        assert consts[dq.input[0]].data_type == onnx.TensorProto.INT8
        assert onnx.numpy_helper.to_array(consts[dq.input[1]]).size == \
            onnx.numpy_helper.to_array(consts[dq.input[0]]).shape[0]
    # every quantised activation is produced by the network (a node feeding a conv, or a
    # conv): decoding, top-k and NMS after the head's last convs stay float
    network = set(quantize.network_nodes(model.graph))
    inputs = {value.name for value in model.graph.input}
    for q in (node for node in model.graph.node if node.op_type == 'QuantizeLinear'):
        source = q.input[0]
        assert source in inputs or source in consts or producer[source].name in network, source
    for op in ('TopK', 'NonMaxSuppression', 'Exp'):
        assert op in ops
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    assert {'effdet_preprocess', 'classes', 'effdet_int8'} <= set(metadata)
    assert '"calib_images": 4' in metadata['effdet_int8']
    assert '"keep_float": ["box-branch"]' in metadata['effdet_int8']


def test_int8_runs_with_the_same_outputs_close_to_float(exported):
    batch = exported['batch']
    for name in ('model', 'raw'):
        _, ref = run(exported[name], batch)
        _, out = run(exported[f'{name}_int8'], batch)
        assert list(out) == list(ref)
        for key in ref:
            assert out[key].shape == ref[key].shape and out[key].dtype == ref[key].dtype, key
    _, det = run(exported['model_int8'], batch)
    labels = det['labels'][0]
    assert set(labels.tolist()) <= {-1, 0, 1} and (labels >= 0).sum() > 0
    assert (np.diff(det['scores'][0]) <= 0).all()
    _, ref = run(exported['raw'], batch)
    _, out = run(exported['raw_int8'], batch)
    for key in ref:
        corr = np.corrcoef(ref[key].ravel(), out[key].ravel())[0, 1]
        assert corr > 0.5, (key, corr)


@pytest.fixture(scope='module')
def prepared(exported, tmp_path_factory):
    """``raw.onnx`` after onnxruntime's ``quant_pre_process`` (constants folded), as
    quantize_onnx prepares it."""
    from onnxruntime.quantization.shape_inference import quant_pre_process
    path = tmp_path_factory.mktemp('prepared') / 'prepared.onnx'
    quant_pre_process(str(exported['raw']), str(path))
    return path


def test_keep_float_parts(prepared):
    graph = onnx.load(str(prepared)).graph
    names = {node.name: node for node in graph.node}
    first = [names[n] for n in quantize.keep_float_nodes(graph, ['input-conv'])]
    assert [node.name for node in first if node.op_type == 'Conv'] == \
        [next(node.name for node in graph.node if node.op_type == 'Conv')]
    outputs = quantize.keep_float_nodes(graph, ['output-convs'])
    # one class and one box prediction conv per level (P3-P7), nothing else
    assert len(outputs) == 10
    assert {n.split('/')[2] for n in outputs} == {'cls_pred', 'reg_pred'}
    box = quantize.keep_float_nodes(graph, ['box-branch'])
    assert {n for n in box if names[n].op_type == 'Conv'} == {
        n for n, node in names.items()
        if node.op_type == 'Conv' and n.startswith(quantize.BOX_BRANCH_PREFIX)}
    assert len(box) > len([n for n in box if names[n].op_type == 'Conv'])  # activations too
    assert not set(box) & set(quantize.keep_float_nodes(graph, ['input-conv']))


def test_padding_folded_without_changing_the_float_result(exported, prepared, tmp_path):
    """TF-"SAME" layers' Pad nodes (zeros before convs, -inf before max-pools) move into
    the layers' pads: none is left, and the float maps stay the same."""
    model = onnx.load(str(prepared))
    pads = sum(node.op_type == 'Pad' for node in model.graph.node)
    assert pads > 0 and quantize.fold_padding(model) == pads
    assert not any(node.op_type == 'Pad' for node in model.graph.node)
    folded = tmp_path / 'folded.onnx'
    onnx.save(model, str(folded))
    _, ref = run(exported['raw'], exported['batch'])
    _, out = run(folded, exported['batch'])
    for key in ref:
        np.testing.assert_allclose(out[key], ref[key], rtol=0, atol=1e-4 * np.abs(ref[key]).max())


def test_infer_tool_runs_the_int8_file(exported, tmp_path):
    out_dir = tmp_path / 'out'
    infer.main([str(exported['config']), 'none', str(exported['image']), '--out-dir',
                str(out_dir), '--backend', 'onnxruntime', '--onnx', str(exported['model_int8'])])
    assert (out_dir / 'detections.json').is_file()
    assert '"class_name"' in (out_dir / 'detections.json').read_text()


@pytest.mark.parametrize('case, message', [
    ('missing', 'not found: export it first'),
    ('quantised', 'quantised already'),
    ('too_many', '--calib-images 50: .* has 6 images'),
    ('classes', 'exported for classes'),
    ('data', 'annotation file'),
])
def test_bad_input_one_error_line(exported, case, message, tmp_path):
    model, config = str(exported['model']), str(exported['config'])
    args = {
        'missing': [str(tmp_path / 'none.onnx'), '--config', config],
        'quantised': [str(exported['model_int8']), '--config', config],
        'too_many': [model, '--config', config, '--calib-images', '50'],
        'classes': [model, '--config', config, '--classes', 'white_box'],
        'data': [model, '--config', config, '--train-ann', 'annotations/missing.json'],
    }[case]
    with pytest.raises(SystemExit, match=message) as exc:
        quantize.main(args + ['--out', str(tmp_path / 'out.onnx')])
    assert str(exc.value.code).startswith('error: ') and '\n' not in str(exc.value.code)
    assert not (tmp_path / 'out.onnx').exists()


def test_cli_error_is_one_line(exported, run_tool, tmp_path):
    proc = run_tool('tools/deploy/quantize_onnx.py', tmp_path / 'none.onnx', '--config',
                    exported['config'])
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith('error: model')
    assert 'Traceback' not in proc.stderr
