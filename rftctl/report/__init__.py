"""Report: comparison tables (markdown / CSV) and PNG plots from the metrics files of every run.

inputs.py       read eval / per-problem / train-log / train-summary files into records
tables.py       build a Table (runs x data sets x Avg@K / Pass@K), render markdown and CSV
plots.py        training curves and pass-rate histograms (matplotlib, Agg, PNG)
experiments.py  the same table over DVC experiments (`dvc exp show --json`)
io.py           atomic writes
"""
