"""Plot loss and metric curves from mmengine's scalar logs into one PNG (``--help``; the code
is :mod:`effdet_plugin.studies.log_curves`)."""
from effdet_plugin.studies.log_curves import main

if __name__ == '__main__':
    main()
