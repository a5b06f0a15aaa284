"""Normalisation at small batch: BN, frozen BN and GN trained at several images per step
(``--help``; the study is :mod:`effdet_plugin.studies.norm_study`)."""
from effdet_plugin.studies.norm_study import main

if __name__ == '__main__':
    main()
