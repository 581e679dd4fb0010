"""Moved to `keras_normloss.methods.penalties`; this module keeps the old import path working."""

from keras_normloss.methods.penalties import *  # noqa: F401,F403
from keras_normloss.methods.penalties import validate_factor  # noqa: F401
