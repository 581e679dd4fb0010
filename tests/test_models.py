import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_normloss import NormLoss, WeightRescaling, models


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# Independent oracles: parameters counted by hand from the papers' layer
# tables (3x3 convs without bias, BN gamma+beta, Dense weights + bias).
def _cifar_resnet_params(depth, classes=10, shortcut="A"):
    n = (depth - 2) // 6
    conv = lambda cin, cout, k=3: k * k * cin * cout  # noqa: E731
    total = conv(3, 16) + 2 * 16
    cin = 16
    for cout in (16, 32, 64):
        for _ in range(n):
            total += conv(cin, cout) + conv(cout, cout) + 4 * cout
            if cin != cout and shortcut == "B":
                total += conv(cin, cout, 1) + 2 * cout
            cin = cout
    return total + 64 * classes + classes


def _wrn_params(depth, width, classes=10):
    n = (depth - 4) // 6
    total = 3 * 3 * 3 * 16
    cin = 16
    for cout in (16 * width, 32 * width, 64 * width):
        for _ in range(n):
            total += 2 * cin + 9 * cin * cout + 2 * cout + 9 * cout * cout
            if cin != cout:
                total += cin * cout
            cin = cout
    return total + 2 * cin + cin * classes + classes


def _resnet50_params(classes=1000):
    total = 7 * 7 * 3 * 64 + 2 * 64
    cin = 64
    for planes, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            total += cin * planes + 9 * planes * planes + planes * 4 * planes
            total += 2 * (planes + planes + 4 * planes)
            if b == 0:
                total += cin * 4 * planes + 2 * 4 * planes
            cin = 4 * planes
    return total + cin * classes + classes


@pytest.mark.parametrize(
    "depth, exact, published_millions, digits",
    [
        # He et al. 2016, Table 6 (CIFAR-10, option A): 0.27M, 0.46M, 0.66M, 0.85M, 1.7M
        (20, 269_722, 0.27, 2),
        (32, 464_154, 0.46, 2),
        (44, 658_586, 0.66, 2),
        (56, 853_018, 0.85, 2),
        (110, 1_727_962, 1.7, 1),
    ],
)
def test_cifar_resnet_parameter_counts_match_he_et_al(depth, exact, published_millions, digits):
    model = models.cifar_resnet(depth)
    assert _trainable(model) == exact == _cifar_resnet_params(depth)
    assert round(exact / 1e6, digits) == published_millions


def test_resnet1202_parameter_count():
    # He et al. 2016, Table 6: 19.4M
    model = models.cifar_resnet(1202)
    assert _trainable(model) == 19_421_274 == _cifar_resnet_params(1202)


def test_option_b_adds_two_projections():
    model = models.cifar_resnet(20, shortcut="B")
    assert _trainable(model) == _cifar_resnet_params(20, shortcut="B") == 269_722 + 2_752


def test_wrn_28_10_parameter_count():
    # Zagoruyko & Komodakis 2016, Table 1 / 4: WRN-28-10 has 36.5M parameters
    model = models.get("wrn28_10")
    assert _trainable(model) == 36_479_194 == _wrn_params(28, 10)
    assert round(36_479_194 / 1e6, 1) == 36.5


def test_resnet50_parameter_count():
    # 25.6M as usually quoted for He et al.'s ResNet-50; 25,557,032 is also
    # torchvision's resnet50 (v1.5) count of parameters.
    model = models.resnet50()
    assert _trainable(model) == 25_557_032 == _resnet50_params()
    assert model.output_shape == (None, 1000)


@pytest.mark.parametrize("name", ["resnet20", "wrn16_4", "resnet50"])
def test_one_penalty_per_conv_and_dense_kernel_and_none_elsewhere(name):
    model = models.get(name, kernel_regularizer=NormLoss(1e-3), input_shape=(32, 32, 3))
    kernel_layers = [
        l for l in model.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))
    ]
    assert len(model.losses) == len(kernel_layers)
    regularized = {id(v) for v in model.trainable_weights if v.regularizer is not None}
    assert regularized == {id(l.kernel) for l in kernel_layers}
    plain = models.get(name, input_shape=(32, 32, 3))
    assert plain.losses == []


def test_constraint_goes_on_every_kernel():
    model = models.cifar_resnet(20, kernel_constraint=WeightRescaling())
    constrained = [v for v in model.trainable_weights if v.constraint is not None]
    assert len(constrained) == 20  # 19 convolutions and the classifier
    assert all(v.path.endswith("kernel") for v in constrained)


@pytest.mark.parametrize("name", models.names())
def test_every_registered_model_trains_one_step(name):
    model = models.get(name, num_classes=5, input_shape=(32, 32, 3), seed=0)
    x = tf.random.stateless_normal((2, 32, 32, 3), seed=(1, 2))
    y = tf.constant([1, 3])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = loss_fn(y, logits)
    grads = tape.gradient(loss, model.trainable_weights)
    assert logits.shape == (2, 5)
    assert np.isfinite(float(loss))
    for var, grad in zip(model.trainable_weights, grads):
        assert grad is not None, var.path
        g = grad.numpy()
        assert np.all(np.isfinite(g)) and np.any(g != 0), var.path


def test_keras_round_trip_gives_identical_predictions(tmp_path):
    model = models.cifar_resnet(20, kernel_regularizer=NormLoss(1e-3), seed=3)
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    path = tmp_path / "resnet20.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert len(loaded.losses) == 20
    assert float(sum(loaded.losses)) == pytest.approx(float(sum(model.losses)), rel=1e-6)


def test_seed_makes_weights_reproducible_and_kernels_distinct():
    a = models.cifar_resnet(20, seed=7).get_weights()
    b = models.cifar_resnet(20, seed=7).get_weights()
    c = models.cifar_resnet(20, seed=8).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    same_shape = [w for w in a if w.shape == (3, 3, 16, 16)]
    assert not np.array_equal(same_shape[0], same_shape[1])


def test_synchronized_bn_and_bn_settings():
    model = models.cifar_resnet(20, synchronized_bn=True, bn_momentum=0.99, bn_epsilon=1e-3)
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(l.synchronized and l.momentum == 0.99 and l.epsilon == 1e-3 for l in bns)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: models.cifar_resnet(21), r"expected 6n\+2 .* Received: depth=21"),
        (lambda: models.cifar_resnet(2), r"expected 6n\+2 .* Received: depth=2"),
        (lambda: models.cifar_resnet(20, shortcut="C"), r"Received: shortcut='C'"),
        (lambda: models.wide_resnet(27, 10), r"expected 6n\+4 .* Received: depth=27"),
        (lambda: models.wide_resnet(28, 0), r"Received: width=0"),
        (lambda: models.wide_resnet(28, 2.5), r"Received: width=2.5"),
        (lambda: models.wide_resnet(16, 4, dropout=1.0), r"Received: dropout=1.0"),
        (lambda: models.get("resnet18"), r"expected one of \['resnet110'"),
    ],
)
def test_invalid_arguments_state_the_rule(build, message):
    with pytest.raises(ValueError, match=message):
        build()
