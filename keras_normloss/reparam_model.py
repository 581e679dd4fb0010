"""Moved to `keras_normloss.methods.reparametrize`; this module keeps the old import path working."""

from keras_normloss.methods.reparametrize import *  # noqa: F401,F403
from keras_normloss.methods.reparametrize import ReparamEntry, ReparamReport  # noqa: F401
