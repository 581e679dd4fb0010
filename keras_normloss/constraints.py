"""Moved to `keras_normloss.methods.projections`; this module keeps the old import path working."""

from keras_normloss.methods.projections import *  # noqa: F401,F403
