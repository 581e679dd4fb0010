"""Timing just the work a method adds to a training step, on TensorFlow or JAX.

What is timed (see benchmarks/overhead.py): a penalty's value and gradient; a constraint's
projection of every constrained kernel; pbwn-epoch's projection; every reparametrization
wrapper's effective kernel, forward and backward; the decoupled optimizers' update. On
TensorFlow each is a `tf.function` over the variables, as a step runs it; on JAX each is the
same Keras code run statelessly (`keras.StatelessScope` maps the variables to arrays and
collects what would be assigned) under `jax.jit`, as Keras's JAX trainer runs a step.
"""

import time

import keras

from keras_normloss import layers


def _timer(work, block=lambda out: out):
    def run(reps):
        block(work())
        start = time.perf_counter()
        for _ in range(reps):
            out = work()
        block(out)
        return (time.perf_counter() - start) / reps

    return run


def _tensorflow(fn, variables, grad):
    import tensorflow as tf

    # The variables themselves: a penalty's gradient is taken with respect to them, and a
    # projection assigns to them, as in a step.
    if not grad:
        return _timer(tf.function(lambda: fn(variables)))

    @tf.function
    def work():
        with tf.GradientTape() as tape:
            total = fn(variables)
        return total, tape.gradient(total, variables)

    return _timer(work)


def _jax(fn, variables, grad):
    import jax

    def stateless(values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
            out = fn(values)
            # What would have been assigned (a projection, a decoupled update), or the output.
            assigned = [scope.get_current_value(v) for v in variables]
        return out if grad else (out, assigned)

    work = jax.jit(jax.value_and_grad(stateless) if grad else stateless)
    values = [v.value for v in variables]
    return _timer(lambda: work(values), jax.block_until_ready)


def extra_work_timer(model, applied):
    """`run(reps) -> seconds per repetition` of what the method adds to a step, or None for
    `none`.

    Args:
        model: the model the method was applied to (compiled, its optimizer built).
        applied: the `MethodReport` of `keras_normloss.methods.apply`.
    """
    kind = applied.method.kind
    if kind == "penalty":
        variables = [v for v in model.trainable_weights if v.regularizer is not None]

        def fn(values):
            return sum(v.regularizer(x) for v, x in zip(variables, values))

        grad = True
    elif kind == "constraint":
        variables = [v for v in model.trainable_weights if v.constraint is not None]

        def fn(values):
            for v, x in zip(variables, values):
                v.assign(v.constraint(x))
            return 0.0

        grad = False
    elif kind == "epoch-projection":
        (projection,) = applied.callbacks
        variables = list(model.trainable_weights)

        def fn(values):
            projection._project()
            return 0.0

        grad = False
    elif kind == "reparametrization":
        wrappers = [
            layer
            for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, layers.KernelReparametrization)
        ]
        variables = [v for w in wrappers for v in w.trainable_variables]

        def fn(values):
            return sum(keras.ops.sum(w.effective_kernel()) for w in wrappers)

        grad = True
    elif kind == "optimizer":
        optimizer = model.optimizer
        variables = list(model.trainable_variables)

        def fn(values):
            # The private hook the decoupled update lives in (keras_optimizer_hook).
            optimizer._apply_weight_decay(variables)
            return 0.0

        grad = False
    else:
        return None
    backend = {"tensorflow": _tensorflow, "jax": _jax}[keras.backend.backend()]
    return backend(fn, variables, grad)
