"""int8 static quantisation of an exported EfficientDet with onnxruntime, calibrated on your
training images: the command behind ``tools/deploy/quantize_onnx.py``.

Only the network is quantised: the nodes on a path from the input to a ``Conv`` (backbone,
BiFPN, head convs; :func:`network_nodes`), passed to onnxruntime as ``nodes_to_quantize``.
Everything after the head's last convs (anchor grid, candidate top-k, box decoding, NMS,
``max_per_img``) reads their dequantised maps and stays float, so boxes and scores keep float
arithmetic. The head's box subnet stays float too unless ``--keep-float none``: box offsets
were the part of the network that int8 hurt (:data:`DEFAULT_KEEP_FLOAT`). Format: QDQ (``QuantizeLinear``/``DequantizeLinear`` pairs that onnxruntime's CPU
provider fuses into int8 kernels), int8 weights per output channel, uint8 activations whose
ranges are calibrated on N training images preprocessed as the file expects (its metadata,
:func:`~.preprocess.preprocess`). onnxruntime's ``quant_pre_process`` (shape inference, graph
optimisation) runs first.

Example::

    python tools/deploy/quantize_onnx.py demo.onnx --config configs/demo/effdet_lite0_nuclei.py \
        --out demo.int8.onnx
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

from .preprocess import preprocess, preprocess_args_from_metadata

CALIB_METHODS = ('minmax', 'entropy', 'percentile')
DEFAULT_CALIB_IMAGES = 64
#: Parts that can be kept float (``--keep-float``): the conv reading the image, the convs whose
#: maps leave the network (the head's class and box predictions), the head's box subnet.
KEEP_FLOAT = ('input-conv', 'output-convs', 'box-branch')
#: Float by default: quantising the box subnet cost 0.035 and 0.054 bbox AP on the two trained
#: models measured, the backbone or the BiFPN alone 0.001-0.002 (docs/deploy_at_scale.md).
DEFAULT_KEEP_FLOAT = ('box-branch', )
#: Name prefix of the box subnet's convs in an export of ``EffDetHead`` (``reg_convs``,
#: ``reg_pred``).
BOX_BRANCH_PREFIX = '/bbox_head/reg_'


def _ancestors(graph, starts: Iterable) -> set:
    """Names of the nodes that produce, directly or not, the inputs of the ``starts`` nodes."""
    producer = {out: node for node in graph.node for out in node.output}
    seen, stack = set(), [producer[i] for node in starts for i in node.input if i in producer]
    while stack:
        node = stack.pop()
        if node.name not in seen:
            seen.add(node.name)
            stack += [producer[i] for i in node.input if i in producer]
    return seen


def network_nodes(graph) -> List[str]:
    """Names of the nodes of ``graph`` (an ``onnx.GraphProto``) on a path from the input to a
    ``Conv``, the convs included: the network without its post-processing, in graph order."""
    convs = [node for node in graph.node if node.op_type == 'Conv']
    network = _ancestors(graph, convs) | {node.name for node in convs}
    return [node.name for node in graph.node if node.name in network]


def keep_float_nodes(graph, which: Sequence[str]) -> List[str]:
    """Nodes of ``graph`` named by :data:`KEEP_FLOAT` entries: ``input-conv``, the first
    conv (no conv before it) and what feeds it (its padding); ``output-convs``, the convs that
    feed no other conv; ``box-branch``, the box subnet's convs (:data:`BOX_BRANCH_PREFIX`)
    and every node that only they depend on (their activations and padding)."""
    convs = [node for node in graph.node if node.op_type == 'Conv']
    names = []
    if 'input-conv' in which:
        conv_names = {node.name for node in convs}
        first = [node for node in convs if not _ancestors(graph, [node]) & conv_names]
        names += [node.name for node in first] + sorted(_ancestors(graph, first))
    if 'output-convs' in which:
        feeding = _ancestors(graph, convs)
        names += [node.name for node in convs if node.name not in feeding]
    if 'box-branch' in which:
        box = [node for node in convs if node.name.startswith(BOX_BRANCH_PREFIX)]
        others = [node for node in convs if not node.name.startswith(BOX_BRANCH_PREFIX)]
        shared = _ancestors(graph, others) | {node.name for node in others}
        names += [node.name for node in box] + sorted(_ancestors(graph, box) - shared)
    return names


def _pads_attribute_reader(node, kind: str, tensor: str) -> bool:
    """``node`` is a ``kind`` node that reads ``tensor`` as its data input and pads by its
    ``pads`` attribute (no ``auto_pad``)."""
    return node.op_type == kind and node.input[0] == tensor and all(
        attr.s in (b'', b'NOTSET') for attr in node.attribute if attr.name == 'auto_pad')


def fold_padding(model) -> int:
    """Move explicit ``Pad`` nodes into the ``pads`` of the nodes that read them: zeros before
    a ``Conv``, ``-inf`` before a ``MaxPool`` (which pad that way); returns the number folded.

    TF-"SAME" convs and max-pools export as a ``Pad`` node and the layer. A ``-inf`` padded
    map would be calibrated to an infinite range, giving it (and the pool, which shares its
    input's scale) an infinite scale; a zero ``Pad`` is a copy of the map that costs time in
    float and in int8. The float result does not change.
    """
    from onnx import helper, numpy_helper
    graph = model.graph
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    outputs = {value.name for value in graph.output}
    folded = []
    for pad in graph.node:
        if (pad.op_type != 'Pad' or pad.output[0] in outputs or pad.input[1] not in consts
                or any(a.name == 'mode' and a.s != b'constant' for a in pad.attribute)):
            continue
        has_value = len(pad.input) > 2 and pad.input[2]
        if has_value and pad.input[2] not in consts:
            continue
        value = float(consts[pad.input[2]]) if has_value else 0.0
        pads = consts[pad.input[1]].tolist()
        kind = {0.0: 'Conv', float('-inf'): 'MaxPool'}.get(value)
        # height and width only (N, C, H, W), no cropping
        if kind is None or len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
            continue
        readers = [node for node in graph.node if pad.output[0] in node.input]
        if not readers or not all(_pads_attribute_reader(node, kind, pad.output[0])
                                  for node in readers):
            continue
        for node in readers:
            old = [a for a in node.attribute if a.name == 'pads']
            total = [p + q for p, q in zip(list(old[0].ints) if old else [0] * 4,
                                           pads[2:4] + pads[6:8])]
            for attr in old:
                node.attribute.remove(attr)
            node.attribute.append(helper.make_attribute('pads', total))
            node.input[0] = pad.input[0]
        folded.append(pad)
    for pad in folded:
        graph.node.remove(pad)
    used = {name for node in graph.node for name in node.input}
    for init in [init for init in graph.initializer if init.name not in used]:
        graph.initializer.remove(init)  # the pads and values of the folded nodes
    return len(folded)


def _name_nodes(model) -> None:
    """Give every unnamed node a unique name (nodes are selected by name)."""
    names = {node.name for node in model.graph.node}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f'{node.op_type}_{i}'
            while node.name in names:
                node.name += '_'
            names.add(node.name)


def spread(items: Sequence, num: int) -> list:
    """``num`` items spread evenly over ``items`` (the first included), in order."""
    return [items[i * len(items) // num] for i in range(num)]


def make_calibration_reader(files: Sequence[str], read: Callable[[str], np.ndarray],
                            preprocess_args: Dict, input_name: str, batch_size: int = 1):
    """An onnxruntime ``CalibrationDataReader`` over ``files``: each read with ``read`` (BGR
    ``uint8``), preprocessed with ``preprocess_args`` (the exported file's metadata), fed in
    batches of ``batch_size`` (a fixed-batch file's size; images of a batch padded to the
    largest). Images are read one batch at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):

        def __init__(self) -> None:
            self.starts = iter(range(0, len(files), batch_size))

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            start = next(self.starts, None)
            if start is None:
                return None
            chunk = [preprocess(read(f), **preprocess_args)[0] for f in
                     files[start:start + batch_size]]
            chunk += chunk[:1] * (batch_size - len(chunk))
            shape = np.max([x.shape for x in chunk], axis=0)
            batch = np.zeros((batch_size, ) + tuple(shape[1:]), np.float32)
            for i, x in enumerate(chunk):
                batch[i, :, :x.shape[2], :x.shape[3]] = x[0]
            return {input_name: batch}

    return _Reader()


def quantize_onnx(onnx_file: str,
                  out_file: str,
                  reader,
                  calib_method: str = 'minmax',
                  keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT,
                  metadata: Optional[Dict[str, str]] = None) -> Dict:
    """Quantise the network of ``onnx_file`` to int8 (QDQ) into ``out_file``.

    Args:
        onnx_file (str): A float file of ``tools/deploy/export_onnx.py``.
        out_file (str): The int8 file to write.
        reader (CalibrationDataReader): Calibration batches
            (:func:`make_calibration_reader`).
        calib_method (str): One of :data:`CALIB_METHODS`: ``minmax`` (every activation's
            full range), ``entropy`` or ``percentile`` (99.999th; both hold every calibration
            activation in memory). Defaults to 'minmax'.
        keep_float (Sequence[str]): :data:`KEEP_FLOAT` entries to leave float.
            Defaults to :data:`DEFAULT_KEEP_FLOAT` (the box subnet).
        metadata (dict[str, str], optional): Extra ``metadata_props`` for ``out_file``.
            Defaults to None.

    Returns:
        dict: ``quantized`` (nodes of the network quantised), ``float`` (nodes left float:
        post-processing and ``keep_float``), ``seconds``.
    """
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calib_method not in CALIB_METHODS:
        raise ValueError(f'calib_method {calib_method!r}: choose one of {CALIB_METHODS}')
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        prepared = osp.join(tmp, 'prepared.onnx')
        quant_pre_process(onnx_file, prepared)
        model = onnx.load(prepared)
        fold_padding(model)
        _name_nodes(model)
        onnx.save(model, prepared)
        excluded = set(keep_float_nodes(model.graph, keep_float))
        nodes = [name for name in network_nodes(model.graph) if name not in excluded]
        method = dict(minmax=CalibrationMethod.MinMax, entropy=CalibrationMethod.Entropy,
                      percentile=CalibrationMethod.Percentile)[calib_method]
        quantize_static(prepared, out_file, reader, quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                        calibrate_method=method)
    quantized = onnx.load(out_file)
    scales = {init.name: init for init in quantized.graph.initializer}
    unbounded = [node.input[0] for node in quantized.graph.node
                 if node.op_type == 'QuantizeLinear' and node.input[1] in scales
                 and not np.isfinite(numpy_helper.to_array(scales[node.input[1]])).all()]
    if unbounded:
        os.remove(out_file)  # unusable
        raise ValueError(f'calibration found {len(unbounded)} activation(s) with an infinite '
                         f'or NaN range (first: {unbounded[0]}): run the float file on the '
                         'calibration images and check its maps are finite')
    for key, value in (metadata or {}).items():
        entry = quantized.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(quantized, out_file)
    return dict(quantized=len(nodes), float=len(model.graph.node) - len(nodes),
                seconds=time.perf_counter() - start)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from ..cli.data_options import add_data_args

    parser = argparse.ArgumentParser(
        description='Quantise an exported EfficientDet to int8 (onnxruntime, QDQ), calibrated '
        'on training images; post-processing stays float')
    parser.add_argument('model', help='float .onnx file of tools/deploy/export_onnx.py')
    parser.add_argument('--config', required=True,
                        help='the config the model was trained with (its training data '
                        'calibrates; the data flags below override it)')
    parser.add_argument('--out', help='int8 file to write; default: MODEL with .int8.onnx')
    parser.add_argument('--calib-images', type=int, metavar='N',
                        help='training images to calibrate on, spread over the training set '
                        f'(default: {DEFAULT_CALIB_IMAGES}, or all when there are fewer)')
    parser.add_argument('--calib-method', choices=CALIB_METHODS, default='minmax',
                        help='activation ranges: full range (default), or entropy / '
                        'percentile histograms (memory grows with N)')
    parser.add_argument('--keep-float', nargs='+', choices=KEEP_FLOAT + ('none', ),
                        default=list(DEFAULT_KEEP_FLOAT),
                        help='parts to leave float: the first conv (reads the image), the '
                        "last convs (the head's predictions), the head's box subnet "
                        "(default: box-branch); 'none' quantises the whole network")
    add_data_args(parser)
    return parser.parse_args(argv)


def _file_metadata(path: str) -> Dict[str, str]:
    """Metadata of an exported float file; exits with one error line when it is not one."""
    import onnx
    if not osp.isfile(path):
        sys.exit(f"error: model '{path}' not found: export it first with "
                 'tools/deploy/export_onnx.py CONFIG CHECKPOINT --out MODEL.onnx')
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and others
        sys.exit(f"error: '{path}' is not an ONNX file ({type(e).__name__}): pass the .onnx "
                 'file of tools/deploy/export_onnx.py')
    if any(node.op_type == 'QuantizeLinear' for node in model.graph.node):
        sys.exit(f"error: '{path}' is quantised already: pass the float export")
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    try:
        preprocess_args_from_metadata(metadata)
    except KeyError as e:
        sys.exit(f'error: {path}: {e.args[0]}')
    return metadata


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    from mmengine.config import Config

    from ..cli.data_options import apply_data_options
    from ..cli.runner import exit_if_dataset_missing
    from .coco_eval import image_reader, split_images

    metadata = _file_metadata(args.model)
    out = args.out or osp.splitext(args.model)[0] + '.int8.onnx'
    if osp.abspath(out) == osp.abspath(args.model):
        sys.exit('error: --out names the float model itself: give another file')
    if not osp.isfile(args.config):
        sys.exit(f"error: config '{args.config}' not found: pass the config the model was "
                 'trained with')
    cfg = Config.fromfile(args.config)
    try:
        apply_data_options(cfg, args)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    exit_if_dataset_missing(cfg, ['train'])
    ann_file, images = split_images(cfg, 'train')
    classes = json.loads(metadata.get('classes') or 'null')
    data_classes = (cfg.train_dataloader.dataset.get('metainfo') or {}).get('classes')
    if classes and data_classes and list(classes) != list(data_classes):
        sys.exit(f'error: {args.model} was exported for classes {list(classes)}, the data '
                 f'names {list(data_classes)}: pass the config (and data flags) it was '
                 'trained with')
    if 'none' in args.keep_float:
        args.keep_float = []
    if args.calib_images is None:
        args.calib_images = min(DEFAULT_CALIB_IMAGES, len(images))
    if not 1 <= args.calib_images <= len(images):
        sys.exit(f'error: --calib-images {args.calib_images}: {ann_file} has {len(images)} '
                 f'images; pass --calib-images between 1 and {len(images)}')
    files = [path for _, path in spread(images, args.calib_images)]

    import onnxruntime as ort
    session = ort.InferenceSession(args.model, providers=['CPUExecutionProvider'])
    model_input = session.get_inputs()[0]
    batch = model_input.shape[0] if isinstance(model_input.shape[0], int) else 1
    del session
    reader = make_calibration_reader(files, image_reader(cfg),
                                     preprocess_args_from_metadata(metadata), model_input.name,
                                     batch)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    provenance = dict(calib_images=len(files), calib_ann_file=ann_file,
                      calib_method=args.calib_method, keep_float=list(args.keep_float))
    try:
        summary = quantize_onnx(args.model, out, reader, args.calib_method, args.keep_float,
                                metadata=dict(effdet_int8=json.dumps(provenance)))
    except (OSError, ValueError) as e:  # an unreadable calibration image, among others
        sys.exit(f'error: {e}')
    sizes = [osp.getsize(path) / 2**20 for path in (args.model, out)]
    print(f'{out}: int8 QDQ, {summary["quantized"]} network nodes quantised, '
          f'{summary["float"]} float (post-processing'
          f'{", " + " ".join(args.keep_float) if args.keep_float else ""}); calibrated on '
          f'{len(files)} images of {ann_file} ({args.calib_method}); {sizes[0]:.1f} MiB -> '
          f'{sizes[1]:.1f} MiB ({summary["seconds"]:.0f} s)')
