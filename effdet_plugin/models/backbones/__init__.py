from .efficientnet import B0_STAGES, EffNet, StageSpec, list_archs, scale_stages

__all__ = ['B0_STAGES', 'EffNet', 'StageSpec', 'list_archs', 'scale_stages']
