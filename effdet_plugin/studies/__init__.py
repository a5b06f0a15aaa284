"""Research studies of the method (compound-scaling lab, transfer evaluation, and the norm/SE
studies): each one a set of training runs of config variants, a results file and a
summary/plot.

Every study trains through :mod:`.runner` (one run = a config variant with a seed and an
iteration budget; resumable results file; progress with ETA), measures models with
:mod:`.measure` and reports through :mod:`.summary` (mean/std over seeds, seed-paired
differences with confidence intervals, markdown tables, plots). A study adds its own
variants (a subpackage such as :mod:`.scaling` or :mod:`.transfer`) and a ``main(argv)`` that
``tools/analysis/`` calls. Nothing else in the package imports this.
"""
