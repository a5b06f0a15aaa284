"""Size and speed of a study's models: parameters, FLOPs (mmengine's counter) and latency,
the latter also in interleaved rounds over many models (fair on a busy machine)."""
import statistics
from typing import Dict, List, Sequence, Tuple

import torch
from mmengine.analysis import FlopAnalyzer


def measure(model: torch.nn.Module, shape: Sequence[int], latency_time: float = 1.0,
            part: str = 'backbone') -> Dict[str, float]:
    """Parameters, FLOPs (mmengine's counter, one multiply-add = one FLOP) of the network
    forward on one ``(H, W)`` image, the FLOPs of ``model.<part>``, and the median latency
    (ms) of that forward, timed by ``torch.utils.benchmark`` for ``latency_time`` seconds
    (0 skips it)."""
    model = model.eval()
    inputs = torch.zeros(1, 3, *shape)
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, (inputs, ))
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops = analyzer.total()
        part_flops = analyzer.by_module().get(part, 0)
    result = dict(params=sum(p.numel() for p in model.parameters()), flops=flops,
                  **{f'{part}_flops': part_flops})
    if latency_time > 0:
        timer = _timer(model, shape)
        result['latency_ms'] = 1e3 * timer.blocked_autorange(min_run_time=latency_time).median
    return result


def time_interleaved(models: Dict[object, Tuple[torch.nn.Module, Sequence[int]]],
                     rounds: int = 5, round_time: float = 0.3) -> Dict[object, float]:
    """Median latency (ms) of each model's batch-1 forward on a zero ``(H, W)`` image, timed
    in ``rounds`` interleaved rounds (every model once per round, ``round_time`` seconds
    each), so that a slow spell of the machine touches all models alike rather than one."""
    timers = {key: _timer(model, shape) for key, (model, shape) in models.items()}
    samples: Dict[object, List[float]] = {key: [] for key in models}
    for _ in range(rounds):
        for key, timer in timers.items():
            samples[key].append(timer.blocked_autorange(min_run_time=round_time).median)
    return {key: 1e3 * statistics.median(times) for key, times in samples.items()}


class _InferenceTimer:
    """A ``torch.utils.benchmark.Timer`` whose runs happen in inference mode."""

    def __init__(self, timer) -> None:
        self.timer = timer

    def blocked_autorange(self, min_run_time: float):
        with torch.inference_mode():
            return self.timer.blocked_autorange(min_run_time=min_run_time)


def _timer(model: torch.nn.Module, shape: Sequence[int]) -> _InferenceTimer:
    """A timer of ``model``'s batch-1 forward on a zero ``(H, W)`` image, warmed up."""
    from torch.utils import benchmark

    inputs = torch.zeros(1, 3, *shape)
    model.eval()
    with torch.inference_mode():
        for _ in range(2):  # warm-up: allocator and first-call costs
            model(inputs)
    return _InferenceTimer(
        benchmark.Timer(stmt='model(inputs)', globals=dict(model=model, inputs=inputs)))
