"""The compiled model of a run: its network, method, optimizer and learning-rate schedule
(built by `keras_normloss.schedules`)."""

import keras

from keras_normloss import methods, models, schedules
from keras_normloss.methods import norm_theory
from keras_normloss.optimizers.decoupled import extend_with_normloss
from keras_normloss.training.compute import JIT_COMPILE

# `--optimizer NAME` (`keras_normloss.choices.OPTIMIZERS`) -> its Keras class.
OPTIMIZER_CLASSES = {
    "sgd": keras.optimizers.SGD,
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
}


def build_model(config, info, schedule):
    """Builds and compiles the model of `config` for a dataset described by `info`, its
    optimizer following `schedule` (`run_schedule`: the run logs each epoch's rate from it too).

    Call it inside the strategy's scope, and under the run's dtype policy.

    Returns:
        (model, callbacks): the compiled model and the callbacks its method needs.
    """
    kwargs = dict(
        num_classes=info.num_classes,
        input_shape=info.image_shape,
        synchronized_bn=config.synchronized_bn,
        seed=config.seed,
    )
    if config.model.startswith("wrn"):
        kwargs["dropout"] = config.dropout
    applied = methods.apply(
        models.get(config.model, **kwargs),
        config.method,
        config.factor,
        weight_decay_on=config.weight_decay_on,
    )
    model = applied.model
    model.compile(
        optimizer=make_optimizer(config, schedule, applied.optimizer_options),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            keras.metrics.SparseCategoricalCrossentropy(from_logits=True, name="cross_entropy"),
        ],
        # "auto" is Keras's: on TensorFlow XLA only with a GPU and without a tf.distribute
        # strategy, so never in `train`, which always runs under one; on JAX always (Keras 3.15,
        # Trainer._resolve_auto_jit_compile). "off" on JAX runs each step op by op: slow.
        jit_compile=JIT_COMPILE[config.jit_compile],
    )
    for callback in applied.callbacks:
        # A resumed run finishes its epoch in a `fit` of its own: the last epoch is the run's.
        if hasattr(callback, "total_epochs"):
            callback.total_epochs = config.epochs
    return model, applied.callbacks


def warmup_steps(config, steps_per_epoch):
    """The warmup's length in steps: `config.warmup_epochs` epochs, rounded."""
    return int(round(config.warmup_epochs * steps_per_epoch))


def make_optimizer(config, schedule, method_options):
    """SGD (the presets' momentum and Nesterov), Adam or AdamW; the optimizer-level
    methods (decoupled Norm Loss or weight decay) extend it. AdamW's own weight
    decay is the method's: 0 unless --method weight-decay-decoupled, so that
    `none` means no regularization whatever the optimizer."""
    base = OPTIMIZER_CLASSES[config.optimizer]
    kwargs = dict(learning_rate=schedule)
    if config.optimizer == "sgd":
        kwargs.update(momentum=config.momentum, nesterov=config.nesterov)
    elif config.optimizer == "adamw":
        kwargs["weight_decay"] = 0.0
    if not method_options:
        return base(**kwargs)
    return extend_with_normloss(base)(**{**kwargs, **method_options})


def schedule_arguments(config, steps_per_epoch):
    """The `schedules.make_schedule` arguments of a run: its kind, peak, length, warmup, decays.

    PiecewiseConstantDecay keeps values[i] while step <= boundaries[i], and the step index of a
    batch is the count of steps before it; so the first batch of epoch e (0-based step
    e · spe) is decayed only if the boundary is e · spe − 1. With e · spe the decay would come
    a step late.
    """
    return dict(
        kind=config.lr_schedule,
        lr=config.lr,
        total_steps=config.epochs * steps_per_epoch,
        warmup_steps=warmup_steps(config, steps_per_epoch),
        decay_boundaries=[int(e * steps_per_epoch) - 1 for e in config.lr_decay_epochs],
        decay=config.lr_decay,
    )


def run_schedule(config, steps_per_epoch):
    """The run's learning-rate schedule (`schedules.make_schedule` of `schedule_arguments`)."""
    arguments = schedule_arguments(config, steps_per_epoch)
    return schedules.make_schedule(arguments.pop("kind"), arguments.pop("lr"), **arguments)


def run_timescale(config, steps_per_epoch):
    """The run's `methods.norm_theory.timescale` record (None for a method without a factor),
    at its schedule's mean learning rate; `config.json` and `results.json` hold it."""
    arguments = schedule_arguments(config, steps_per_epoch)
    return norm_theory.timescale(
        config.method,
        config.factor,
        mean_lr=schedules.mean_learning_rate(**arguments),
        peak_lr=config.lr,
        total_steps=arguments["total_steps"],
        optimizer=config.optimizer,
        momentum=config.momentum,
    )
