"""How much does pre-training buy? Fine-tune one config from several starting points.

Runs the config's (iteration-based) schedule, shortened or stretched to ``--iters``, once per
starting point, one after the other with mmengine's Runner, evaluates each on the config's
validation set and prints one markdown table (also written to ``WORK_DIR/transfer_eval.md``
and ``.json``):

- ``imagenet``: the config as it is (its backbone ``init_cfg``, e.g. ImageNet weights);
- ``scratch``: the backbone's own random init (``init_cfg`` removed), nothing frozen;
- ``frozen``: ImageNet backbone with every layer frozen (EffNet ``frozen_stages`` = its deepest
  output layer, norms in eval mode): only neck and heads train;
- ``coco``: the whole detector initialised from ``--checkpoint-coco`` (a COCO-trained
  checkpoint of the same architecture; heads whose shapes differ, e.g. 80 vs 1 classes, keep
  their init), only when that option is given.

Every run uses the config's seed, data and schedule, so the table isolates the initialisation.

Example:
    python tools/analysis/transfer_eval.py configs/medical/effdet-lite0_nuclei.py \
        --iters 200 --work-dir work_dirs/transfer [--checkpoint-coco effdet-lite0_coco.pth]
"""
import argparse
import copy
import json
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config, DictAction

MODES = ('imagenet', 'scratch', 'frozen', 'coco')
DESCRIPTIONS = dict(
    imagenet='ImageNet backbone, all trained',
    scratch='random init, all trained',
    frozen='ImageNet backbone frozen, neck + heads trained',
    coco='COCO detector checkpoint, all trained')
# (metric key, column title), in table order; a column appears when any run reports it.
COLUMNS = (('coco/bbox_mAP', 'bbox AP'), ('coco/bbox_mAP_50', 'bbox AP50'),
           ('coco/segm_mAP', 'segm AP'), ('coco/segm_mAP_50', 'segm AP50'),
           ('semseg/mIoU', 'mIoU'))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n\n'.join(__doc__.split('\n\n')[1:]))
    parser.add_argument('config', help='config with an IterBasedTrainLoop')
    parser.add_argument('--checkpoint-coco', help='COCO-trained detector checkpoint (adds the '
                        '"coco" run)')
    parser.add_argument('--iters', type=int, help='training iterations of every run (the '
                        "config's schedule is rescaled); default: the config's max_iters")
    parser.add_argument('--work-dir', default='work_dirs/transfer_eval',
                        help='one sub-folder per run, plus transfer_eval.md/.json')
    parser.add_argument('--modes', nargs='+', choices=MODES,
                        help='runs to make; default: all (coco only with --checkpoint-coco)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='overrides applied to the config before every run')
    return parser.parse_args(argv)


def rescale_schedule(cfg: Config, iters: int) -> None:
    """Set ``max_iters`` to ``iters``; scale the iteration-based LR schedule with it and
    evaluate / checkpoint once, at the end."""
    train_cfg = cfg.train_cfg
    if train_cfg.get('type') != 'IterBasedTrainLoop' or 'max_iters' not in train_cfg:
        raise ValueError('transfer_eval needs an iteration-based config (train_cfg.type='
                         f"'IterBasedTrainLoop'), got train_cfg={dict(train_cfg)}")
    if iters < 1:
        raise ValueError(f'--iters must be >= 1, got {iters}')
    old = train_cfg.max_iters

    def scale(value: int) -> int:
        return iters if value >= old else min(iters - 1, max(1, round(value * iters / old)))

    schedulers = cfg.get('param_scheduler') or []
    for sched in [schedulers] if isinstance(schedulers, dict) else schedulers:
        if sched.get('by_epoch', True):
            raise ValueError(f'only iteration-based param schedulers can be rescaled: {sched}')
        begin = scale(sched['begin']) if sched.get('begin', 0) > 0 else 0
        end = scale(sched.get('end', old))
        sched.update(begin=begin, end=max(end, begin + 1))
        if 'T_max' in sched:
            sched['T_max'] = sched['end'] - begin
    train_cfg.max_iters = iters
    # no evaluation inside the loop: every run is evaluated once, after training
    train_cfg.val_interval = iters + 1
    if cfg.get('default_hooks', {}).get('checkpoint') is not None:
        cfg.default_hooks.checkpoint.update(interval=iters, save_best=None)


def mode_config(cfg: Config, mode: str, work_dir: str,
                checkpoint_coco: Optional[str] = None) -> Config:
    """A copy of ``cfg`` set up for one starting point."""
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = osp.join(work_dir, mode)
    # a unique name per run keeps mmengine's global logger/visualizer instances apart
    cfg.experiment_name = f'{mode}_{time.strftime("%Y%m%d_%H%M%S")}'
    cfg.load_from, cfg.resume = None, False
    backbone = cfg.model.backbone
    if mode == 'scratch':
        backbone.pop('init_cfg', None)  # the backbone class default (random) init
        if 'frozen_stages' in backbone:
            backbone.frozen_stages = -1  # frozen random filters would only hurt
    elif mode == 'frozen':
        if backbone.get('type') != 'EffNet':
            raise ValueError(f"'frozen' is defined for EffNet backbones, got "
                             f"{backbone.get('type')}")
        backbone.frozen_stages = max(backbone.get('out_indices', (3, 5, 7)))
    elif mode == 'coco':
        if not checkpoint_coco:
            raise ValueError("the 'coco' run needs --checkpoint-coco")
        cfg.load_from = checkpoint_coco
    elif mode != 'imagenet':
        raise ValueError(f'unknown mode {mode!r}, expected one of {MODES}')
    return cfg


def expected_metrics(cfg: Config) -> List[str]:
    """Table keys the config's evaluators produce."""
    evaluators = cfg.val_evaluator
    keys = []
    for evaluator in evaluators if isinstance(evaluators, list) else [evaluators]:
        if evaluator.get('type') == 'CocoMetric':
            metrics = evaluator.get('metric', 'bbox')
            for metric in [metrics] if isinstance(metrics, str) else metrics:
                keys += [f'coco/{metric}_mAP', f'coco/{metric}_mAP_50']
        elif 'SemSeg' in evaluator.get('type', ''):
            keys.append('semseg/mIoU')
    return keys


def run_one(cfg: Config) -> Dict[str, float]:
    """Train, then evaluate (EMA weights when the config has an EMAHook)."""
    from mmengine.runner import Runner

    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    train_s = time.perf_counter() - start
    metrics = {k: float(v) for k, v in runner.val().items()}
    # CocoMetric returns nothing at all when a model predicts nothing: that is AP 0
    for key in expected_metrics(cfg):
        metrics.setdefault(key, 0.0)
    return dict(metrics, train_s=train_s, total_s=time.perf_counter() - start)


def format_table(results: Dict[str, Dict[str, float]], iters: int) -> str:
    """One markdown row per run, one column per metric any run reported."""
    columns = [(key, title) for key, title in COLUMNS if any(key in r for r in results.values())]
    columns += sorted((key, key.split('/', 1)[-1]) for key in
                      {k for r in results.values() for k in r if k.startswith('semseg/IoU.')})
    header = ['run', 'init'] + [title for _, title in columns] + ['train s', 'iters']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for mode, res in results.items():
        cells = [mode, DESCRIPTIONS[mode]]
        for key, _ in columns:
            value = res.get(key)
            # mmdet's CocoMetric reports 0-1, EffDetSemSegMetric percent
            cells.append('-' if value is None else
                         f'{value:.1f}' if key.startswith('semseg/') else f'{value:.3f}')
        cells += [f"{res['train_s']:.0f}", str(iters)]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, float]]:
    args = parse_args(argv)
    from mmdet.utils import register_all_modules

    import effdet_plugin  # noqa: F401  (registers the plugin's modules)
    register_all_modules()

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    iters = args.iters or cfg.train_cfg.get('max_iters')
    rescale_schedule(cfg, iters)
    modes: List[str] = args.modes or [m for m in MODES if m != 'coco' or args.checkpoint_coco]

    results: Dict[str, Dict[str, float]] = {}
    for mode in modes:
        print(f'== transfer_eval: {mode} ({DESCRIPTIONS[mode]}), {iters} iterations')
        results[mode] = run_one(mode_config(cfg, mode, args.work_dir, args.checkpoint_coco))
        print(format_table(results, iters), flush=True)  # partial table after every run

    table = format_table(results, iters)
    title = f'Transfer comparison: `{args.config}`, {iters} iterations each'
    with open(osp.join(args.work_dir, 'transfer_eval.md'), 'w') as f:
        f.write(f'{title}\n\n{table}\n')
    with open(osp.join(args.work_dir, 'transfer_eval.json'), 'w') as f:
        json.dump(dict(config=args.config, iters=iters, results=results), f, indent=1)
    print(f'\n{title}\n\n{table}')
    return results


if __name__ == '__main__':
    main()
