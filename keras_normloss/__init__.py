"""keras-normloss: Norm Loss (Georgiou et al., ICPR 2020) and its peers for Keras 3.

Public names:
    NormLoss          the regularizer: factor * sum_c (1 - ||w_c||)**2
    weight_decay      the weight-decay baseline in the paper/PyTorch convention
    SoftOrthogonality, SRIP   orthogonality penalties (Bansal et al., NeurIPS 2018)
    WeightRescaling   the weight-rescaling (WRS) baseline, a constraint
    attach            add any of them to a built or pretrained model; attach(model, "wn") by name
    WeightNorm, ONI, OrthogonalWeightNorm   kernel reparametrizations (WN, ONI, OLM/OWN)
    reparametrize     wrap the layers of a built model in one of them
    EpochProjection   PBWN's per-epoch projection (a callback)
    methods           THE table of methods: methods.names(), methods.apply(model, name, factor)
    optimizers        decoupled Norm Loss / weight decay for any Keras optimizer
    channel_norms, oblique_distance, output_channel_axes, layer_kernels
    models            the papers' networks: models.get("resnet110"), models.names()
    errors            every exception a user may catch
    NormMonitor       (keras_normloss.callbacks) channel-norm statistics each epoch
    NormDynamics      (keras_normloss.callbacks) norms, angular updates, effective learning
                      rates of sampled optimizer steps, per layer kind
    methods.norm_theory   each method's timescale and equilibrium angular update
    schedules         learning-rate schedules: step, linear to zero, cosine, constant; warmup
    PreciseBatchNorm  (keras_normloss.batch_norm) BatchNorm statistics recomputed at the final
                      weights before each evaluation
"""

from keras_normloss import _lazy, startup  # no Keras: os, sys, json only

# Public name -> where it lives (keras_normloss._lazy): imported when first used.
_PUBLIC = {
    "batch_norm": "keras_normloss.batch_norm",
    "callbacks": "keras_normloss.callbacks",
    "errors": "keras_normloss.errors",
    "methods": "keras_normloss.methods",
    "models": "keras_normloss.models",
    "optimizers": "keras_normloss.optimizers",
    "schedules": "keras_normloss.schedules",
    "AttachReport": "keras_normloss.attach:AttachReport",
    "attach": "keras_normloss.attach:attach",
    "apply_method": "keras_normloss.methods:apply",
    "ONI": "keras_normloss.layers.oni:ONI",
    "OrthogonalWeightNorm": "keras_normloss.layers.own:OrthogonalWeightNorm",
    "SRIP": "keras_normloss.regularizers.penalties:SRIP",
    "NormLoss": "keras_normloss.regularizers.penalties:NormLoss",
    "SoftOrthogonality": "keras_normloss.regularizers.penalties:SoftOrthogonality",
    "weight_decay": "keras_normloss.regularizers.penalties:weight_decay",
    "EpochProjection": "keras_normloss.constraints.projections:EpochProjection",
    "WeightRescaling": "keras_normloss.constraints.projections:WeightRescaling",
    "reparametrize": "keras_normloss.layers.reparametrize:reparametrize",
    "WeightNorm": "keras_normloss.layers.weight_norm:WeightNorm",
    "data_dependent_init": "keras_normloss.layers.weight_norm:data_dependent_init",
    "UnsupportedLayerError": "keras_normloss.errors:UnsupportedLayerError",
    "channel_norms": "keras_normloss.norms:channel_norms",
    "layer_kernels": "keras_normloss.norms:layer_kernels",
    "oblique_distance": "keras_normloss.norms:oblique_distance",
    "output_channel_axes": "keras_normloss.norms:output_channel_axes",
}

__getattr__ = _lazy.attributes(__name__, _PUBLIC)

# The command line imports Keras (hence TensorFlow, 5-8 s) only for the commands that train, so
# that `--help`, `plot` and argument errors answer at once (`cli.start_tensorflow`). Imported from
# Python, everything is imported here as it always was: `models` and `schedules` register their
# serializable objects (ZeroPadShortcut, LinearWarmup), so `import keras_normloss` is enough to
# load a saved model; a script that asks for the command's quiet (KERAS_NORMLOSS_TF_LOGS=hide)
# gets TensorFlow imported without its start-up lines (see startup.py).
if not startup.is_command_line():
    startup.default_to_jax_without_tensorflow()
    startup.quiet_tensorflow_import()
    for _name in _PUBLIC:
        __getattr__(_name)
    del _name

__version__ = "0.1.0"

__all__ = [
    "AttachReport",
    "EpochProjection",
    "NormLoss",
    "ONI",
    "SRIP",
    "SoftOrthogonality",
    "OrthogonalWeightNorm",
    "WeightNorm",
    "apply_method",
    "batch_norm",
    "callbacks",
    "data_dependent_init",
    "errors",
    "methods",
    "optimizers",
    "reparametrize",
    "schedules",
    "UnsupportedLayerError",
    "WeightRescaling",
    "attach",
    "channel_norms",
    "layer_kernels",
    "models",
    "oblique_distance",
    "output_channel_axes",
    "weight_decay",
]
