"""tools/test.py end to end on the tiny dataset: evaluation, --out, --tta, bad arguments."""
import json
import pickle

from mmengine.runner import Runner


def test_test_cli_with_tta_and_out(tiny_det_cfg, tiny_coco, tmp_path, run_tool):
    cfg = tiny_det_cfg(max_epochs=1)
    Runner.from_cfg(cfg).train()
    ckpt = tmp_path / 'work_dir' / 'epoch_1.pth'
    cfg_file = tmp_path / 'tiny.py'
    cfg.dump(str(cfg_file))
    out = tmp_path / 'results.pkl'
    proc = run_tool('tools/test.py', cfg_file, ckpt, '--tta', '--out', out,
                    '--work-dir', tmp_path / 'test', '--cfg-options',
                    'model.test_cfg.score_thr=0.0')
    assert proc.returncode == 0, proc.stderr[-3000:]
    test_dir = tmp_path / 'test'
    metrics = json.loads(next(test_dir.glob('*/*.json')).read_text())
    assert 0 <= metrics['coco/bbox_mAP'] <= 1
    with open(out, 'rb') as f:
        results = pickle.load(f)
    assert sorted(r['img_id'] for r in results) == list(range(1, tiny_coco.num_images + 1))
    assert all(r['pred_instances']['bboxes'].shape[1] == 4 for r in results)
    # --tta wrapped the model (the Runner dumps the config it ran into the work dir).
    assert "type='DetTTAModel'" in (test_dir / 'tiny.py').read_text()


def test_test_cli_rejects_missing_checkpoint(tiny_det_cfg, tmp_path, run_tool):
    cfg_file = tmp_path / 'tiny.py'
    tiny_det_cfg().dump(str(cfg_file))
    proc = run_tool('tools/test.py', cfg_file, tmp_path / 'nope.pth')
    assert proc.returncode == 1
    assert 'checkpoint not found' in proc.stderr and 'Traceback' not in proc.stderr
