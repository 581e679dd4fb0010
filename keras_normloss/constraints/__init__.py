"""Projections of the weights after updates: WRS (a Keras constraint, after every step) and PBWN's
projection once an epoch (a callback).

projections.py   WeightRescaling, EpochProjection
"""

from keras_normloss.constraints.projections import EpochProjection, WeightRescaling

__all__ = ["EpochProjection", "WeightRescaling"]
