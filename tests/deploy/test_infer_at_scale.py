"""tools/infer.py on many images: batches of mixed sizes give batch 1's detections (PyTorch and
onnxruntime), a killed or interrupted run resumes with every image exactly once, the COCO
results carry the annotation file's ids, and --no-vis writes no picture."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from effdet_plugin.deploy import infer
from effdet_plugin.deploy.onnx_export import export_onnx, preprocess_metadata
from tests.deploy.conftest import hard_nms_demo

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / 'configs/demo/effdet_lite0_nuclei.py'
# (h, w) of the crops: 96x160 pads to 128x256 and batches with 128x256 (the demo config
# keeps the native size and pads to multiples of 128)
SIZES = [(128, 128)] * 5 + [(128, 256)] * 4 + [(96, 160)] * 3


@pytest.fixture(scope='module')
def demo(nuclei_image, tmp_path_factory):
    """The demo model with realistic random weights (checkpoint and a hard-NMS config for its
    ONNX export) and a folder of nuclei crops of the sizes in SIZES."""
    root = tmp_path_factory.mktemp('at_scale')
    demo = hard_nms_demo(root, nuclei_image[:128, :256])
    images = root / 'images'
    images.mkdir()
    for i, (h, w) in enumerate(SIZES):  # different crops: every image its own detections
        y, x = (7 * i) % (256 - h), (11 * i) % (256 - w + 1)
        cv2.imwrite(str(images / f'img{i:02d}.png'), nuclei_image[y:y + h, x:x + w])
    return dict(root=root, config=demo.config, model=demo.model, cfg=demo.cfg,
                checkpoint=demo.checkpoint, images=images)


def run(demo, out_dir, *extra):
    infer.main([str(demo['config']), str(demo['checkpoint']), str(demo['images']),
                '--out-dir', str(out_dir), *map(str, extra)])


def read_jsonl(path) -> dict:
    records = [json.loads(line) for line in Path(path).read_text().splitlines()]
    by_file = {r['file']: r['detections'] for r in records}
    assert len(by_file) == len(records)  # each image once
    return by_file


def assert_same_detections(ours: dict, ref: dict) -> None:
    """Same images, same detections in the same order, within the JSON's rounding (2
    decimals for boxes, 4 for scores) of float differences between batch sizes."""
    assert sorted(ours) == sorted(ref)
    for path, dets in ref.items():
        assert len(ours[path]) == len(dets) > 0, path
        assert [d['label'] for d in ours[path]] == [d['label'] for d in dets]
        boxes, ref_boxes = (np.array([d['bbox'] for d in x]) for x in (ours[path], dets))
        scores, ref_scores = (np.array([d['score'] for d in x]) for x in (ours[path], dets))
        assert np.abs(boxes - ref_boxes).max() <= 0.0101, path
        assert np.abs(scores - ref_scores).max() <= 1.01e-4, path


def test_pytorch_batch8_of_mixed_sizes_equals_batch1(demo, tmp_path):
    run(demo, tmp_path / 'b1', '--batch-size', 1, '--workers', 0, '--no-vis')
    run(demo, tmp_path / 'b8', '--batch-size', 8, '--workers', 2, '--no-vis')
    ref = read_jsonl(tmp_path / 'b1' / 'detections.jsonl')
    assert len(ref) == len(SIZES)
    assert_same_detections(read_jsonl(tmp_path / 'b8' / 'detections.jsonl'), ref)
    # the final files hold the same, read back from the lines
    assert json.loads((tmp_path / 'b8' / 'detections.json').read_text()).keys() == ref.keys()


def test_onnxruntime_batch8_equals_batch1(demo, tmp_path):
    shape = (128, 256)  # every crop is padded to the exported size: one batch shape
    metadata = preprocess_metadata(demo['cfg'], shape, ('nucleus', ))
    dynamic, fixed = tmp_path / 'dynamic.onnx', tmp_path / 'fixed.onnx'
    export_onnx(demo['model'], str(dynamic), shape, dynamic=True, metadata=metadata)
    export_onnx(demo['model'], str(fixed), shape, metadata=metadata)
    onnx = ('--backend', 'onnxruntime', '--no-vis')
    run(demo, tmp_path / 'b1', *onnx, '--onnx', dynamic, '--batch-size', 1)
    run(demo, tmp_path / 'b8', *onnx, '--onnx', dynamic, '--batch-size', 8)
    # a file exported for batch 1 runs --batch-size 8 one image at a time
    run(demo, tmp_path / 'fixed', *onnx, '--onnx', fixed, '--batch-size', 8)
    ref = read_jsonl(tmp_path / 'b1' / 'detections.jsonl')
    assert len(ref) == len(SIZES)
    assert_same_detections(read_jsonl(tmp_path / 'b8' / 'detections.jsonl'), ref)
    assert_same_detections(read_jsonl(tmp_path / 'fixed' / 'detections.jsonl'), ref)


def test_resume_after_a_kill_mid_line_does_every_image_once(demo, tmp_path):
    run(demo, tmp_path / 'full', '--batch-size', 4, '--no-vis')
    full = (tmp_path / 'full' / 'detections.jsonl').read_text().splitlines(keepends=True)
    # a run killed while writing its 6th line: 5 whole lines and half of one
    out = tmp_path / 'killed'
    out.mkdir()
    (out / 'detections.jsonl').write_text(''.join(full[:5]) + full[5][:len(full[5]) // 2])
    run(demo, out, '--batch-size', 4, '--no-vis', '--resume')
    resumed = (out / 'detections.jsonl').read_text().splitlines(keepends=True)
    assert resumed[:5] == full[:5]  # kept as written, the broken line redone
    assert_same_detections(read_jsonl(out / 'detections.jsonl'),
                           read_jsonl(tmp_path / 'full' / 'detections.jsonl'))
    # a broken line that is not the last is not a kill's: one error naming the line
    lines = (out / 'detections.jsonl').read_text().splitlines(keepends=True)
    (out / 'detections.jsonl').write_text(lines[0] + '{"file": \n' + ''.join(lines[1:]))
    with pytest.raises(SystemExit, match='line 2 is not a JSON record'):
        run(demo, out, '--no-vis', '--resume')


def test_killed_process_resumes_with_every_image_once(demo, tmp_path):
    images = tmp_path / 'many'
    images.mkdir()
    src = sorted(demo['images'].glob('*.png'))
    for i in range(60):  # enough that the kill lands half way
        (images / f'{i:03d}.png').write_bytes(src[i % len(src)].read_bytes())
    out = tmp_path / 'out'
    proc = subprocess.Popen(
        [sys.executable, 'tools/infer.py', str(demo['config']), str(demo['checkpoint']),
         str(images), '--out-dir', str(out), '--no-vis', '--batch-size', '2', '--workers', '1'],
        cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS='1'), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    jsonl = out / 'detections.jsonl'
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline and not (
            jsonl.is_file() and jsonl.read_text().count('\n') >= 10):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    assert 10 <= jsonl.read_text().count('\n') < 60
    infer.main([str(demo['config']), str(demo['checkpoint']), str(images), '--out-dir',
                str(out), '--no-vis', '--batch-size', '8', '--resume'])
    files = [json.loads(line)['file'] for line in jsonl.read_text().splitlines()]
    assert sorted(files) == sorted(str(p) for p in images.glob('*.png'))  # each exactly once
    assert len(json.loads((out / 'detections.json').read_text())) == 60


def test_ctrl_c_keeps_what_was_written(demo, tmp_path, monkeypatch, capsys):
    from effdet_plugin.deploy import batching
    predict, calls = batching.predict_pytorch, []

    def interrupted_at_third_batch(model, batch):
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return predict(model, batch)

    monkeypatch.setattr(batching, 'predict_pytorch', interrupted_at_third_batch)
    with pytest.raises(SystemExit) as stop:
        run(demo, tmp_path, '--batch-size', 2, '--no-vis', '--workers', 0)
    assert stop.value.code == 130
    assert 'interrupted: 4 of 12 images' in capsys.readouterr().err
    assert len(read_jsonl(tmp_path / 'detections.jsonl')) == 4
    assert not (tmp_path / 'coco_results.json').exists()  # only a finished run writes it
    monkeypatch.setattr(batching, 'predict_pytorch', predict)
    run(demo, tmp_path, '--batch-size', 2, '--no-vis', '--resume')
    assert len(read_jsonl(tmp_path / 'detections.jsonl')) == len(SIZES)


def test_coco_results_use_the_annotation_file_ids(demo, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    names = sorted(p.name for p in demo['images'].glob('*.png'))
    ids = {name: 1000 + 7 * i for i, name in enumerate(reversed(names))}  # not positions
    images = [dict(id=ids[n], file_name=f'sub/{n}', height=h, width=w)
              for n, (h, w) in zip(names, SIZES)]
    annotations = [dict(id=i + 1, image_id=img['id'], category_id=3, bbox=[10, 10, 20, 20],
                        area=400, iscrowd=0) for i, img in enumerate(images)]
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps(dict(images=images, annotations=annotations,
                                   categories=[dict(id=3, name='nucleus')])))
    out = tmp_path / 'out'
    run(demo, out, '--batch-size', 8, '--no-vis', '--ann', ann)
    results = json.loads((out / 'coco_results.json').read_text())
    dets = read_jsonl(out / 'detections.jsonl')
    assert len(results) == sum(map(len, dets.values()))
    by_image = {}
    for r in results:
        by_image.setdefault(r['image_id'], []).append(r)
    assert by_image.keys() == set(ids.values())
    for path, image_dets in dets.items():
        rows = by_image[ids[Path(path).name]]
        assert [r['score'] for r in rows] == [d['score'] for d in image_dets]
        x1, y1, x2, y2 = image_dets[0]['bbox']
        assert rows[0]['bbox'] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.011)
    assert {r['category_id'] for r in results} == {3}
    gt = COCO(str(ann))
    evaluator = COCOeval(gt, gt.loadRes(str(out / 'coco_results.json')), 'bbox')
    evaluator.evaluate()
    evaluator.accumulate()
    assert len(evaluator.evalImgs) > 0
    # an input the annotation file does not list: one error before any work
    (tmp_path / 'other').mkdir()
    cv2.imwrite(str(tmp_path / 'other' / 'x.png'), np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(SystemExit, match=r"1 of 1 input\(s\) are not images of .*ann.json"):
        infer.main([str(demo['config']), str(demo['checkpoint']), str(tmp_path / 'other'),
                    '--out-dir', str(tmp_path / 'out2'), '--ann', str(ann)])


def test_no_vis_writes_results_only(demo, tmp_path):
    run(demo, tmp_path / 'out', '--no-vis')
    assert not list((tmp_path / 'out').rglob('*.png'))
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == [
        'coco_results.json', 'detections.json', 'detections.jsonl']
    run(demo, tmp_path / 'vis', '--batch-size', 8)  # pictures by default, one per image
    assert len(list((tmp_path / 'vis').glob('*.png'))) == len(SIZES)


def test_shape_batches_stay_bounded_with_many_shapes():
    from effdet_plugin.deploy.batching import ShapeBatcher
    batcher = ShapeBatcher(batch_size=4)
    rng = np.random.RandomState(0)
    items = [dict(id=i, key=(128, 128 * int(rng.randint(1, 12)))) for i in range(500)]
    batches = []
    for item in items:
        batches += batcher.add(item)
        assert sum(map(len, batcher.waiting.values())) <= 16  # 4 x batch size
    batches += batcher.flush()
    assert sorted(i['id'] for b in batches for i in b) == list(range(500))  # each once
    assert all(len({i['key'] for i in b}) == 1 and len(b) <= 4 for b in batches)
    assert len(batches) <= 500 / 3  # 11 shapes, 16 places: still 3+ images a batch on average
