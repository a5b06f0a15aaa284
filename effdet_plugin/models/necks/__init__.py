from .bifpn import BiFPNCell, EffBiFPN, FusionNodeSpec, bifpn_topology
from .bifpn_layers import LevelResample, MaxPool2dSame, WeightedFusion

__all__ = [
    'BiFPNCell', 'EffBiFPN', 'FusionNodeSpec', 'bifpn_topology', 'LevelResample',
    'MaxPool2dSame', 'WeightedFusion'
]
