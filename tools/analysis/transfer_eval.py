"""How much does pre-training buy, and how much labelled data is needed? (``--help``; the
study is :mod:`effdet_plugin.studies.transfer.study`)."""
from effdet_plugin.studies.transfer.study import main

if __name__ == '__main__':
    main()
