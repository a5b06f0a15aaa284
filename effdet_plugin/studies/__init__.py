"""Experiments of the method this project follows (compound-scaling lab, transfer evaluation):
each one a set of training runs, a results file and a summary/plot. tools/analysis/ holds their
command lines; nothing else in the package imports this.
"""
