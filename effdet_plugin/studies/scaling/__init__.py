"""The compound-scaling lab: which model sizes a config's data needs (coefficient search, phi
sweep per scaling dimension) and the EfficientNet scaling table. Commands:
``tools/analysis/scaling_search.py``, ``scaling_sweep.py``, ``scaling_table.py``."""
