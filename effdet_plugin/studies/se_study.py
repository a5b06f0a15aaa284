"""The SE-gate study: gate statistics of a trained model, pruning by gate against L1-norm and
random channel ranking at the same FLOPs, and AP before pruning, after it and after fine-tuning.

Used by ``tools/analysis/se_gates.py``; the pruning itself is :mod:`.se_gates`.
"""
import copy
import json
import os
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from ..checkpoint import WeightsCheckSettings, load_checkpoint
from . import se_gates
from . import summary as stats
from .measure import measure, time_interleaved
from .runner import ResultsFile, provenance, rescale_schedule, train
from .summary import format_markdown

METRIC = 'coco/bbox_mAP'


def ap_of(metrics: Dict[str, float]) -> float:
    """bbox AP; mmdet's COCO metric returns nothing when a model detects nothing: AP 0."""
    return float(metrics.get(METRIC, 0.0))


def build_model(cfg: Config, checkpoint: Optional[str] = None) -> torch.nn.Module:
    """The config's model on the CPU, in eval mode, with ``checkpoint``'s ``state_dict``."""
    from mmdet.registry import MODELS

    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(copy.deepcopy(cfg.model))
    if checkpoint:  # through the weights check (finite, fits the model both ways)
        load_checkpoint(model, checkpoint, WeightsCheckSettings.from_cfg(cfg))
    return model.eval()


def gate_dataloader(cfg: Config, split: str = 'train'):
    """The images of ``split`` through the test pipeline (no augmentation), batch 1."""
    loader = copy.deepcopy(cfg.get(f'{split}_dataloader'))
    if loader is None:
        raise ValueError(f'the config has no {split}_dataloader')
    loader.dataset.pipeline = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    loader.update(batch_size=1, num_workers=0, persistent_workers=False,
                  sampler=dict(type='DefaultSampler', shuffle=False))
    loader.pop('batch_sampler', None)
    return Runner.build_dataloader(loader)


def evaluate(cfg: Config, checkpoint: str, work_dir: str) -> Dict[str, float]:
    """Validation metrics of ``checkpoint`` under ``cfg`` (EMA weights: the checkpoint's
    ``state_dict``, which mmengine's EMA hook writes there)."""
    cfg = copy.deepcopy(cfg)
    cfg.update(load_from=checkpoint, resume=False, work_dir=work_dir, log_level='WARNING',
               experiment_name=f'eval_{osp.basename(work_dir)}_{time.strftime("%H%M%S")}')
    if cfg.get('default_hooks', {}).get('checkpoint') is not None:
        # validation alone: no "best" checkpoint to keep (the hook saves one only in training)
        cfg.default_hooks.checkpoint.save_best = None
    from ..cli import build_runner  # the tools' checked Runner
    metrics = build_runner(cfg).val()
    return {k: float(v) for k, v in metrics.items()}


def pruned_config(cfg: Config, hidden: List[List[Optional[int]]]) -> Config:
    """``cfg`` whose backbone is built with the pruned hidden widths, and no pretrained init."""
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.hidden_channels = hidden
    cfg.model.backbone.pop('init_cfg', None)
    return cfg


def save_pruned(cfg: Config, state_dict: Dict[str, torch.Tensor], out_dir: str,
                name: str) -> Tuple[str, str]:
    """Write ``<name>.py`` (a config that builds the pruned model) and ``<name>.pth``."""
    os.makedirs(out_dir, exist_ok=True)
    cfg_path, ckpt_path = osp.join(out_dir, f'{name}.py'), osp.join(out_dir, f'{name}.pth')
    cfg.dump(cfg_path)
    torch.save(dict(state_dict=state_dict, meta=dict(pruned_from=name)), ckpt_path)
    return cfg_path, ckpt_path


def collect_gates(cfg: Config, checkpoint: str, out_dir: str, split: str = 'train',
                  threshold: float = 0.1, max_images: Optional[int] = None):
    """Gate statistics over ``split``; writes ``gates.json`` and one heat-map PNG per stage.

    Returns:
        tuple: The loaded model and the statistics by block name.
    """
    se_gates.se_blocks(build_model(cfg).backbone)  # before loading: fails early for Lite
    model = build_model(cfg, checkpoint)
    stats = se_gates.iterate_gates(model, gate_dataloader(cfg, split), threshold, max_images)
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, 'gates.json'), 'w') as f:
        json.dump(dict(checkpoint=checkpoint, split=split,
                       blocks=se_gates.stats_to_json(stats)), f, indent=1)
    se_gates.plot_gate_heatmaps(stats, out_dir)
    return model, stats


def prune_study(cfg: Config, checkpoint: str, out_dir: str, ratios: Sequence[float],
                rankings: Sequence[str] = se_gates.RANKINGS, seeds: int = 1,
                finetune: int = 0, split: str = 'train', threshold: float = 0.1,
                max_images: Optional[int] = None, shape: Sequence[int] = (256, 256),
                latency_time: float = 1.0, finetune_lr: float = 0.1,
                log=print) -> List[Dict[str, object]]:
    """Prune ``checkpoint`` at each ratio with each ranking (random: one per seed), evaluate,
    optionally fine-tune ``finetune`` iterations, and tabulate params, FLOPs, CPU latency and
    AP. Rows already in ``out_dir/prune.csv`` are skipped (resumable).

    Fine-tuning runs the config's schedule shrunk to ``finetune`` iterations at
    ``finetune_lr`` times its learning rate: the pruned model starts near a solution, and the
    full rate of a training from scratch throws part of it away. The unpruned model is
    fine-tuned alike (its row's ``ap_finetuned``): the baseline a fine-tuned pruned model is
    compared with, since it trained that much longer. Every row records the git commit and
    torch thread count that made it."""
    model, stats = collect_gates(cfg, checkpoint, out_dir, split, threshold, max_images)
    blocks = se_gates.se_blocks(model.backbone)
    se_gates.check_prunable_norms(blocks)
    results = _results_file(out_dir, checkpoint, finetune, finetune_lr, split, shape)
    runs = osp.join(out_dir, 'runs')
    if not results.done(ratio=0.0, ranking='none', seed=0):
        figures = measure(model, shape, latency_time)
        metrics = evaluate(cfg, checkpoint, osp.join(runs, 'unpruned'))
        results.append(dict(ratio=0.0, ranking='none', seed=0, channels=0,
                            params=figures['params'], flops=figures['flops'],
                            latency_ms=figures.get('latency_ms'), ap_pruned=ap_of(metrics),
                            ap_finetuned=None, **provenance()))
    if finetune > 0 and not _unpruned_row(results.rows).get('ap_finetuned'):
        # the fair baseline of a fine-tuned pruned model: the unpruned one trained as long
        tuned = _finetune(cfg, checkpoint, osp.join(runs, 'unpruned_ft'), finetune,
                          finetune_lr, seed=0)
        log(f'unpruned: AP {tuned:.3f} after the same {finetune} it of fine-tuning')
        results.update('ap_finetuned', lambda row: tuned if row['ranking'] == 'none' else None)
    state = model.state_dict()
    prunable = se_gates.prunable_channels(blocks)
    for ratio in ratios:
        for ranking in rankings:
            for seed in range(seeds if ranking == 'random' else 1):
                if results.done(ratio=ratio, ranking=ranking, seed=seed):
                    continue
                name = f'pruned_{ranking}_{ratio:g}_s{seed}'
                kept = se_gates.keep_indices(blocks, ratio, ranking, stats, seed)
                removed = prunable - sum(int(k.numel()) for k in kept.values())
                small_cfg = pruned_config(cfg, se_gates.pruned_hidden_channels(model.backbone,
                                                                               kept))
                small_state = se_gates.prune_state_dict(state, kept, stats=stats)
                cfg_path, ckpt_path = save_pruned(small_cfg, small_state, out_dir, name)
                small = build_model(Config.fromfile(cfg_path), ckpt_path)  # from its own files
                figures = measure(small, shape, latency_time)
                ap = ap_of(evaluate(small_cfg, ckpt_path, osp.join(runs, name)))
                tuned = None
                if finetune > 0:
                    tuned = _finetune(small_cfg, ckpt_path, osp.join(runs, f'{name}_ft'),
                                      finetune, finetune_lr, seed)
                log(f'{name}: {removed}/{prunable} channels removed, '
                    f'{figures["flops"] / 1e9:.3f} GFLOPs, AP {ap:.3f}'
                    + ('' if tuned is None else f' -> {tuned:.3f} after {finetune} it'))
                results.append(dict(ratio=ratio, ranking=ranking, seed=seed, channels=removed,
                                    params=figures['params'], flops=figures['flops'],
                                    latency_ms=figures.get('latency_ms'), ap_pruned=ap,
                                    ap_finetuned=tuned, **provenance()))
    write_table(results.rows, out_dir)
    return results.rows


def _unpruned_row(rows: Sequence[Dict[str, str]]) -> Dict[str, str]:
    return next(r for r in rows if r['ranking'] == 'none')


def _finetune(cfg: Config, checkpoint: str, work_dir: str, iters: int, lr_share: float,
              seed: int) -> float:
    """AP after training ``checkpoint`` ``iters`` iterations: the config's schedule shrunk
    to them, at ``lr_share`` times its learning rate."""
    cfg = copy.deepcopy(cfg)
    cfg.load_from = checkpoint
    rescale_schedule(cfg, iters)
    cfg.optim_wrapper.optimizer.lr *= lr_share
    return ap_of(train(cfg, work_dir, seed).metrics)


def _results_file(out_dir: str, checkpoint: str, finetune: int, finetune_lr: float, split: str,
                  shape: Sequence[int]) -> ResultsFile:
    """``out_dir/prune.csv``, refused when it was made with other settings."""
    return ResultsFile(out_dir, 'prune.csv', ('ratio', 'ranking', 'seed'),
                       dict(checkpoint=osp.abspath(checkpoint), finetune=finetune,
                            finetune_lr=finetune_lr, split=split, shape=list(shape)))


def retime_study(cfg: Config, checkpoint: str, out_dir: str, finetune: int = 0,
                 finetune_lr: float = 0.1, split: str = 'train',
                 shape: Sequence[int] = (256, 256), rounds: int = 5,
                 log=print) -> List[Dict[str, str]]:
    """Rewrite ``latency_ms`` of every finished row of ``out_dir/prune.csv`` with one
    interleaved timing (:func:`time_interleaved`), for figures taken on a machine that was busy
    while the study ran. One model per ratio: every ranking removes the same number of channels
    from each block, so their architectures are the same."""
    results = _results_file(out_dir, checkpoint, finetune, finetune_lr, split, shape)
    if not results.rows:
        raise ValueError(f'--retime: no finished runs in {results.path}; run the same command '
                         'without --retime first')
    models = {}
    for row in results.rows:
        ratio = float(row['ratio'])
        if ratio not in models:
            name = f'pruned_{row["ranking"]}_{ratio:g}_s{row["seed"]}'
            model_cfg = (cfg if row['ranking'] == 'none'
                         else Config.fromfile(osp.join(out_dir, f'{name}.py')))
            models[ratio] = (build_model(model_cfg), shape)  # latency: the architecture only
    log(f'timing {len(models)} models, {rounds} interleaved rounds ...')
    latency = time_interleaved(models, rounds=rounds)
    results.update('latency_ms', lambda row: round(latency[float(row['ratio'])], 3))
    write_table(results.rows, out_dir)
    return results.rows


def _mean_std(group: Dict[str, object], key: str) -> str:
    """``0.700 ± 0.020``; the mean alone for one run."""
    if group.get(key) is None:
        return '-'
    spread = group[f'{key}_std']
    return stats.fmt(group[key]) + ('' if spread != spread else f' ± {stats.fmt(spread)}')


def write_table(rows: Sequence[Dict[str, str]], out_dir: str) -> str:
    """``prune.md``: one line per run, relative FLOPs and latency against the unpruned model,
    the commit and thread count that made it; then, per (ratio, ranking), mean +- std over the
    seeds (random draws) of both APs."""
    base = _unpruned_row(rows)
    header = ['ratio', 'ranking', 'seed', 'channels removed', 'params (M)', 'GFLOPs',
              'FLOPs x', 'latency x', 'AP pruned', 'AP fine-tuned', 'commit', 'threads']

    def ratio_of(row, key):
        return (f'{float(row[key]) / float(base[key]):.3f}' if row.get(key) and base.get(key)
                else '-')

    lines = [[r['ratio'], r['ranking'], r['seed'], r['channels'],
              f'{float(r["params"]) / 1e6:.3f}', f'{float(r["flops"]) / 1e9:.3f}',
              ratio_of(r, 'flops'), ratio_of(r, 'latency_ms'), f'{float(r["ap_pruned"]):.3f}',
              f'{float(r["ap_finetuned"]):.3f}' if r.get('ap_finetuned') else '-',
              r.get('commit') or '-', r.get('threads') or '-']
             for r in rows]
    text = format_markdown(header, lines)
    groups = stats.summarise(stats.parse_rows(rows, ('ranking', 'commit')), ('ratio', 'ranking'),
                             ['ap_pruned', 'ap_finetuned'], keep=())
    text += '\n\nMean ± std over seeds (random: one draw per seed):\n\n' + format_markdown(
        ['ratio', 'ranking', 'seeds', 'AP pruned', 'AP fine-tuned'],
        [[g['ratio'], g['ranking'], g['n'], _mean_std(g, 'ap_pruned'),
          _mean_std(g, 'ap_finetuned')] for g in groups])
    with open(osp.join(out_dir, 'prune.md'), 'w') as f:
        f.write(text + '\n')
    return text
