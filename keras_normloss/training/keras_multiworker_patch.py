"""A patch of Keras's private trainer code so that `fit` runs under MultiWorkerMirroredStrategy.

Keras 3 does not run `fit` under this strategy (keras-team/keras#20585,
tensorflow/tensorflow#72388), for two reasons, both worked around here:

1. A model that remembers the strategy it was built in first averages one
   batch across workers eagerly (`_maybe_symbolic_build`, which reads the
   model's `_distribute_strategy`), which this strategy cannot do.
   Forgetting it makes Keras build at trace time; `fit` then runs inside
   `strategy.scope()`, where Keras finds the strategy.
2. Keras averages each step's scalar logs across workers with
   `strategy.reduce("MEAN", v, axis=0)`; a scalar has no axis 0. The patched
   `reduce_per_replica` uses `axis=None` (average over replicas only), and
   leaves everything else to Keras.

It touches private names of `keras.src.backend.tensorflow.trainer`; `check_private_api` says
whether they are still what the patch expects, and `apply` refuses to patch if not.
`tests/test_training_faults.py` fails loudly when a Keras release changes them.
"""

import inspect

import keras

# The Keras releases the patch was checked against (by
# tests/test_distributed.py::test_multi_worker_training_on_localhost).
KERAS_VERSIONS_CHECKED = ("3.15.1",)

_EXPECTED_SIGNATURES = {
    "reduce_per_replica": ["values", "strategy", "reduction"],
    "_collective_all_reduce_multi_worker": ["strategy"],
    "_is_per_replica_instance": ["obj"],
}


def check_private_api():
    """The ways this Keras differs from what the patch expects (an empty list if none).

    Returns:
        A list of one-line descriptions.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    problems = []
    for name, parameters in _EXPECTED_SIGNATURES.items():
        function = getattr(tf_trainer, name, None)
        if function is None:
            problems.append(f"keras.src.backend.tensorflow.trainer.{name} is gone")
            continue
        function = getattr(function, "keras_normloss_original", function)
        found = list(inspect.signature(function).parameters)
        if found != parameters:
            problems.append(
                f"keras.src.backend.tensorflow.trainer.{name} takes ({', '.join(found)}), "
                f"expected ({', '.join(parameters)})"
            )
    build = getattr(tf_trainer.TensorFlowTrainer, "_maybe_symbolic_build", None)
    if build is None:
        problems.append("TensorFlowTrainer._maybe_symbolic_build is gone")
    else:
        try:
            source = inspect.getsource(build)
        except OSError:  # installed without sources: the signatures above must do
            source = "_distribute_strategy"
        if "_distribute_strategy" not in source:
            problems.append(
                "TensorFlowTrainer._maybe_symbolic_build no longer reads `_distribute_strategy`"
            )
    return problems


def apply(model):
    """Lets `model.fit` run under MultiWorkerMirroredStrategy (see the module docstring).

    Args:
        model: a Keras model built under the strategy's scope.

    Raises:
        RuntimeError: if this Keras changed the private names the patch relies on.
    """
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    problems = check_private_api()
    if problems:
        raise RuntimeError(
            f"--strategy multiworker needs a patch of Keras's private trainer code, checked "
            f"against Keras {', '.join(KERAS_VERSIONS_CHECKED)}; Keras {keras.__version__} "
            f"changed it ({'; '.join(problems)})"
        )
    model._distribute_strategy = None
    original = tf_trainer.reduce_per_replica
    if hasattr(original, "keras_normloss_original"):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(
            strategy
        ):
            return tree.map_structure(
                lambda v: (
                    strategy.reduce("MEAN", v, axis=None)
                    if tf_trainer._is_per_replica_instance(v)
                    else v
                ),
                values,
            )
        return original(values, strategy, reduction)

    reduce_per_replica.keras_normloss_original = original
    tf_trainer.reduce_per_replica = reduce_per_replica
