"""The equilibrium theory of `keras_normloss.methods.norm_theory`, checked by measurement.

    python benchmarks/norm_equilibrium.py                 # docs/norm-dynamics.md's table (about 3 minutes)
    python benchmarks/norm_equilibrium.py --steps 3000 --lr 0.05 --momentum 0.5 \\
        --methods weight-decay normloss --factors 1e-3 1e-2

A small convolutional network whose convolutions are each followed by BatchNorm (so their
channels are scale-invariant) is trained with SGD at a constant learning rate on random images
with random labels (the gradient noise never dies out, as the theory assumes) until its channel
norms have settled, for each method and factor; `keras_normloss.callbacks.NormDynamics` measures
every step of the last `--measure` steps. The table prints, for the convolutions after the stem,
the measured root-mean-square angular update per step (radians), the mean angle, the mean
channel norm, and the angle the theory predicts: `√(2ηλ/(1 + μ))` for weight decay (Wan et al.
2021; Kosson et al. 2024), `√(4ηλ(1 − 1/r)/(1 + μ))` for Norm Loss at the measured norm r, and
the decoupled forms' `(1 − μ)` factor. Prints the table; writes nothing.
"""

import argparse
import math

import numpy as np

IMAGE = (8, 8, 3)
CLASSES = 10
# At the default lr 0.5 and momentum 0.9 their timescales are 50 to 500 steps, so 2,000 steps
# reach equilibrium; two factors 4 to 10 times apart for each method.
DEFAULT_FACTORS = {
    "weight-decay": [2e-3, 5e-4],
    "normloss": [2e-3, 2e-4],
    "weight-decay-decoupled": [2e-2, 5e-3],
    "normloss-decoupled": [1e-2, 2e-3],
}


def build_network(seed):
    """Conv(16)-BN-ReLU, Conv(16)-BN-ReLU, Conv(16)-BN-ReLU, global pooling, Dense: every
    convolution is followed by BatchNorm, so its channels are scale-invariant."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(IMAGE)
    x = inputs
    for i in range(3):
        x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        # PyTorch's epsilon: Keras's 1e-3 is felt by channels whose outputs are small, which
        # breaks their scale invariance (measured: weight decay 1e-2 collapsed every norm to 0).
        # No γ, β: at a large lr on random labels they ran away, every ReLU died and the
        # gradients with them (measured); without them half of each channel stays active.
        x = keras.layers.BatchNormalization(epsilon=1e-5, center=False, scale=False, name=f"bn{i}")(
            x
        )
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(CLASSES, name="classifier")(x)
    return keras.Model(inputs, outputs)


def measure(method, factor, lr, momentum, *, steps=2000, measure_steps=500, batch=16, seed=0):
    """Trains the network with `method` at `factor` and returns the measured and predicted
    equilibrium of its convolutions after the stem.

    Args:
        method: `weight-decay`, `normloss`, `weight-decay-decoupled` or `normloss-decoupled`.
        factor: λ.
        lr: the constant learning rate η.
        momentum: SGD's μ.
        steps: all training steps; the last `measure_steps` are measured, every one.
        batch: the batch size.
        seed: the seed of the weights and data.

    Returns:
        A dict: `angle_rms` and `angle_mean` (radians, averaged over the measured steps),
        `norm` (mean channel norm), `predicted` (the theory's RMS angle at that norm and η).
    """
    import keras

    from keras_normloss import callbacks, methods
    from keras_normloss.methods import norm_theory
    from keras_normloss.training.build import make_optimizer

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(steps * batch, *IMAGE)).astype("float32")
    y = rng.integers(0, CLASSES, size=steps * batch)
    # On the convolutions only, the channels the theory is about: decayed too, the classifier
    # of random labels shrinks to 0 and takes the convolutions' gradients with it (measured:
    # every norm collapsed to 0 under weight decay 2e-3 at lr 0.5).
    applied = methods.apply(build_network(seed), method, factor, layers="convs")
    # The package's own optimizer path: SGD with momentum, extended for the decoupled methods.
    config = argparse.Namespace(optimizer="sgd", momentum=momentum, nesterov=False)
    optimizer = make_optimizer(config, lr, applied.optimizer_options)
    model = applied.model
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(
        x[: (steps - measure_steps) * batch],
        y[: (steps - measure_steps) * batch],
        batch_size=batch,
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    dynamics = callbacks.NormDynamics(every=1)
    model.fit(
        x[(steps - measure_steps) * batch :],
        y[(steps - measure_steps) * batch :],
        batch_size=batch,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[dynamics],
    )
    rows = [r for r in dynamics.rows if r["group"] == "conv"]
    norm = float(np.mean([r["norm_mean"] for r in rows]))
    angle_rms = math.sqrt(float(np.mean([r["angular_update_rms"] ** 2 for r in rows])))
    predicted = norm_theory.equilibrium_angular_update(
        method, factor, lr, momentum=momentum, norm=norm
    )
    return {
        "angle_rms": angle_rms,
        "angle_mean": float(np.mean([r["angular_update"] for r in rows])),
        "norm": norm,
        "predicted": predicted,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["weight-decay", "normloss", "weight-decay-decoupled", "normloss-decoupled"],
    )
    parser.add_argument(
        "--factors",
        type=float,
        nargs="+",
        help="the factors of every method (default: each method's two, timescales of 50 to 500 "
        "steps)",
    )
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--measure", type=int, default=500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(
        f"constant lr {args.lr:g}, momentum {args.momentum:g}, {args.steps} steps, the last "
        f"{args.measure} measured; convolutions after the stem (scale-invariant)"
    )
    print(
        f"{'method':<24} {'factor':>8} {'norm':>7} {'angle rms':>10} {'angle mean':>11} "
        f"{'predicted':>10} {'measured/predicted':>19}"
    )
    for method in args.methods:
        for factor in args.factors or DEFAULT_FACTORS[method]:
            m = measure(
                method,
                factor,
                args.lr,
                args.momentum,
                steps=args.steps,
                measure_steps=args.measure,
                batch=args.batch,
                seed=args.seed,
            )
            ratio = "-" if not m["predicted"] else f"{m['angle_rms'] / m['predicted']:.3f}"
            predicted = "-" if not m["predicted"] else f"{m['predicted']:.5f}"
            print(
                f"{method:<24} {factor:>8g} {m['norm']:>7.3f} {m['angle_rms']:>10.5f} "
                f"{m['angle_mean']:>11.5f} {predicted:>10} {ratio:>19}",
                flush=True,
            )


if __name__ == "__main__":
    main()
