"""Test (and evaluate) a detector with mmengine's Runner; the CLI is mmdet's ``tools/test.py``
(``--help``; the code is :mod:`effdet_plugin.cli.evaluate`)."""
from effdet_plugin.cli.evaluate import main

if __name__ == '__main__':
    main()
