"""Whether a run can write TensorBoard summaries: Keras's `TensorBoard` callback and
`NormMonitor`'s histograms write through TensorFlow's `tf.summary`, which a JAX installation
may not have.
"""

import sys

from keras_normloss import startup

NO_TENSORFLOW_NOTE = (
    "NOTE: no TensorBoard output (tensorboard/): TensorBoard's summaries are written by "
    "TensorFlow, which is not installed; metrics.csv holds every epoch's numbers."
)


def tensorflow_for_summaries():
    """TensorFlow, imported to write summaries, or None where it cannot be imported.

    On the TensorFlow backend it is imported already. On JAX it is imported here (quietly, as
    the command line does) and kept off the GPUs: a TensorFlow that initialises a GPU reserves
    most of its memory, which JAX has reserved for itself; summaries need only the CPU. Call it
    before `keras.utils.set_random_seed`, which imports TensorFlow wherever it is installed,
    whatever the backend (Keras 3.15, `rng_utils`), loudly and with its GPUs.

    Returns:
        The `tensorflow` module, or None.

    Example:

    ```python
    if tensorflow_for_summaries() is None:
        print(NO_TENSORFLOW_NOTE)
    ```
    """
    if sys.modules.get("tensorflow") is not None:
        return sys.modules["tensorflow"]
    try:
        if startup.tensorflow_logs_shown():
            import tensorflow as tf
        else:
            with startup.stderr_silenced():
                import tensorflow as tf
    except ImportError:  # not installed, or blocked (sys.modules["tensorflow"] = None)
        return None
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TensorFlow's runtime had started: its devices are set already
        pass
    return tf
