"""Report: comparison tables (markdown / CSV), the tidy results file and PNG plots from the
metrics files of every run x seed.

inputs.py       read eval / per-problem / train-log / train-summary files into records, per seed
intervals.py    95 % t-interval over seeds (tabulated t quantiles), percentile intervals
bootstrap.py    bootstrap over problems: metric intervals, paired differences, Pass@K bands
tables.py       build a Table (runs x data sets x Avg@n / Pass@K, mean +- interval, deltas)
render.py       the Table as markdown (+ footnote, difference table), CSV and JSON records
results.py      the tidy results file: one row per run x seed x set x metric x K
plots.py        training curves (seed bands), pass-rate histograms, Pass@K curves (PNG)
experiments.py  the same table over DVC experiments (`dvc exp show --json`)
"""
