"""Accuracy as a number the product measures and enforces.

``dataset`` reads labelled face folders and pairs files, ``metrics`` turns
scores into verification and identification figures, ``evaluate`` runs the
device's own pipeline over a data set, ``calibration`` turns an impostor
score distribution into thresholds, floors and watch-list size budgets, and
``plot`` draws the detection-error trade-off curves.
"""
