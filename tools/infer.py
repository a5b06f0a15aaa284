"""Run a trained detector on an image, a folder of images or DICOM files (``--help``; the code
is :mod:`effdet_plugin.deploy.infer`)."""
from effdet_plugin.deploy.infer import main

if __name__ == '__main__':
    main()
