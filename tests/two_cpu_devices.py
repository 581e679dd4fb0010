"""Runs `keras-normloss ARGS...` with two logical CPU devices (for MirroredStrategy).

Logical devices must be configured before TensorFlow initialises, hence a
script of its own: `python tests/two_cpu_devices.py train --strategy mirrored ...`.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

from keras_normloss.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
