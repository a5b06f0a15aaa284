"""Glue between tools/ and the package: argument parsing, data options, AMP, distributed setup,
memory format, the work-dir lock and the commands behind the tools that are neither a study
nor deployment (test, check_dataset, weight conversion). tools/, studies/ and deploy/ (and
tests) import it; nothing inside models/, datasets/, checkpoint/ or engine/ may.
"""
from .amp import enable_amp
from .dist import finish_distributed, setup_cpu_distributed
from .runner import (
    build_runner,
    exit_if_dataset_missing,
    exit_on_weights_error,
    init_detector,
    load_config,
    parse_runner_args,
)

__all__ = [
    'build_runner', 'enable_amp', 'exit_if_dataset_missing', 'exit_on_weights_error',
    'init_detector', 'load_config', 'parse_runner_args',
    'finish_distributed', 'setup_cpu_distributed'
]
