"""`python -m keras_normloss train|sweep|plot`, the same as `keras-normloss`."""

import sys

from keras_normloss.cli import main

sys.exit(main())
