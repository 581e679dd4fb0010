"""The private Keras optimizer hook that decoupled updates rest on, isolated and checked."""

import inspect

import keras
from keras import ops

# ---------------------------------------------------------------------------
# Private API this module rests on. Checked with keras 3.15.1 (TensorFlow
# 2.21, jax 0.10); `check_private_api()` verifies it, and the tests call it.
#
# 1. `BaseOptimizer._apply_weight_decay(self, variables)`. Every backend's
#    `apply` calls it once per real update step, after gradient clipping and
#    before `update_step`, on the trainable variables, with
#    `self.learning_rate` already the schedule's current value. It is not
#    called on steps LossScaleOptimizer skips (non-finite gradients), nor on
#    the non-update micro-steps of `gradient_accumulation_steps` (on JAX it is
#    called and its result reverted by `lax.cond`). On JAX it runs inside
#    `stateless_apply`'s StatelessScope, so plain `variable.assign` is traced
#    into the jitted step. Keras's own Muon optimizer overrides it too.
# 2. TensorFlow only: `tf.__internal__.distribute.interim.maybe_merge_call`
#    and `TFOptimizer._distribution_strategy`, exactly as Keras's
#    `TFOptimizer._apply_weight_decay` uses them to update mirrored variables
#    per device from cross-replica context. If they disappear, the public
#    `ReplicaContext.merge_call` and `tf.distribute.get_strategy()` are used.
# ---------------------------------------------------------------------------

KERAS_VERSION_CHECKED = "3.15.1"
_HOOK = "_apply_weight_decay"


def check_private_api(optimizer_class=None):
    """Checks that Keras still has the optimizer hook this module overrides.

    Args:
        optimizer_class: a Keras optimizer class; `None` checks
            `keras.optimizers.Optimizer`, the base of every optimizer.

    Raises:
        RuntimeError: naming the missing or changed API and the Keras version
            this module was checked with.

    Example:

    ```python
    check_private_api(keras.optimizers.SGD)  # passes silently
    ```
    """
    cls = keras.optimizers.Optimizer if optimizer_class is None else optimizer_class
    hook = getattr(cls, _HOOK, None)
    problem = None
    if not callable(hook):
        problem = f"`{cls.__name__}.{_HOOK}` no longer exists"
    else:
        params = list(inspect.signature(hook).parameters)
        if params != ["self", "variables"]:
            problem = f"`{cls.__name__}.{_HOOK}` now has parameters {params}"
    if problem is None and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if not hasattr(tf.__internal__.distribute.interim, "maybe_merge_call"):
            problem = "`tf.__internal__.distribute.interim.maybe_merge_call` is gone"
    if problem is not None:
        raise RuntimeError(
            f"keras_normloss.optimizers.decoupled rests on private Keras API that has "
            f"changed: {problem} (checked with keras {KERAS_VERSION_CHECKED}; "
            f"this is keras {keras.__version__}). Decoupled Norm Loss and "
            "weight decay would not be applied correctly; pin "
            f"keras=={KERAS_VERSION_CHECKED} or update keras_normloss."
        )


def assign_per_device(optimizer, targets, update_fn):
    """`v.assign(update_fn(v, axes))` for each `(v, axes)`, replica-safe.

    On TensorFlow the updates run from cross-replica context, once per device
    copy, as Keras's own `TFOptimizer._apply_weight_decay` does; each copy is
    updated from its own value, so the copies stay identical. Elsewhere (JAX,
    PyTorch) it is a plain assign.
    """
    if keras.backend.backend() != "tensorflow":
        for variable, axes in targets:
            variable.assign(update_fn(variable.value, axes))
        return
    import tensorflow as tf

    # `targets` travels in the closure: MirroredStrategy runs the first
    # replica's merge function, and every replica built the same targets.
    def apply_in_cross_replica_context(distribution):
        for variable, axes in targets:
            tf_variable = variable.value if isinstance(variable, keras.Variable) else variable
            distribution.extended.update(
                tf_variable,
                lambda v, axes=axes: v.assign(ops.cast(update_fn(v, axes), v.dtype)),
                group=False,
            )

    strategy = getattr(optimizer, "_distribution_strategy", None) or tf.distribute.get_strategy()
    maybe_merge_call = getattr(tf.__internal__.distribute.interim, "maybe_merge_call", None)
    if maybe_merge_call is not None:
        maybe_merge_call(apply_in_cross_replica_context, strategy)
    elif tf.distribute.in_cross_replica_context():
        apply_in_cross_replica_context(strategy)
    else:
        tf.distribute.get_replica_context().merge_call(apply_in_cross_replica_context)


# ---------------------------------------------------------------------------
# Which variables get Norm Loss, and over which axes.
# ---------------------------------------------------------------------------
