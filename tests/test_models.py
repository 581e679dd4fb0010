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
    # He et al. 2016, Table 6: 19.4M. From the formula the built depths above check: building
    # ResNet-1202 (19.4M parameters, 1,202 layers) took 28 s of the suite, and it gave 19,421,274.
    assert _cifar_resnet_params(1202) == 19_421_274
    assert round(19_421_274 / 1e6, 1) == 19.4


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


def _kernels(model):
    return [v.numpy() for v in model.trainable_weights if v.path.endswith("kernel")]


def test_two_seeds_share_no_kernel_nor_a_rescaled_stream():
    """With per-layer seeds `seed + i`, seed 1's kernels were seed 0's kernels
    of the next layer (bit-identical where shapes matched, the same stream
    rescaled elsewhere). Compare every pair, on their standardised first
    values, so a shared stream shows whatever the shapes."""
    a, b = _kernels(models.cifar_resnet(56, seed=0)), _kernels(models.cifar_resnet(56, seed=1))
    shortest = min(k.size for k in a + b)
    za = np.stack([k.ravel()[:shortest] / k.ravel()[:shortest].std() for k in a])
    zb = np.stack([k.ravel()[:shortest] / k.ravel()[:shortest].std() for k in b])
    distance = np.abs(za[:, None, :] - zb[None, :, :]).max(axis=-1)
    assert distance.min() > 0.1, "a kernel of seed 1 repeats a kernel stream of seed 0"
    rebuilt = _kernels(models.cifar_resnet(56, seed=0))
    assert all(np.array_equal(x, y) for x, y in zip(a, rebuilt))


def _conv_numpy(x, kernel, stride, pad):
    """Cross-correlation of NHWC `x` with an HWIO kernel, zero-padded by
    `pad` on every side, as PyTorch's Conv2d(padding=pad)."""
    x = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    k = kernel.shape[0]
    out = (x.shape[1] - k) // stride + 1
    y = np.zeros((x.shape[0], out, out, kernel.shape[-1]))
    for i in range(out):
        for j in range(out):
            patch = x[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
            y[:, i, j, :] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return y


def _strided_convs(model):
    return [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D)
        and layer.strides[0] > 1
        and layer.kernel_size[0] > 1
    ]


@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda: models.cifar_resnet(20, seed=0), 2),
        (lambda: models.wide_resnet(16, 1, seed=0), 2),
        (lambda: models.resnet50(num_classes=10, input_shape=(64, 64, 3), seed=0), 4),
    ],
)
def test_strided_convolutions_pad_symmetrically_as_pytorch(build, expected):
    model = build()
    convs = _strided_convs(model)
    assert len(convs) == expected
    rng = np.random.default_rng(0)
    for conv in convs:
        pad = model.get_layer(f"{conv.name}_pad")
        sub = keras.Model(pad.input, conv.output)
        x = rng.normal(size=(2, *pad.input.shape[1:])).astype("float32")
        k = conv.kernel_size[0]
        expected_y = _conv_numpy(x, conv.kernel.numpy(), conv.strides[0], (k - 1) // 2)
        np.testing.assert_allclose(sub(x).numpy(), expected_y, rtol=1e-4, atol=1e-4)


def test_strided_conv_centre_is_the_shortcut_pixel():
    """A kernel that copies its centre tap gives exactly the option-A
    shortcut's subsampling x[::2, ::2]: the two branches are aligned."""
    model = models.cifar_resnet(20, seed=0)
    conv = model.get_layer("stage2_block1_conv1")
    pad = model.get_layer("stage2_block1_conv1_pad")
    centre = np.zeros(conv.kernel.shape, "float32")
    for c in range(16):
        centre[1, 1, c, c] = 1.0
    conv.kernel.assign(centre)
    x = np.random.default_rng(1).normal(size=(1, 32, 32, 16)).astype("float32")
    y = keras.Model(pad.input, conv.output)(x).numpy()
    shortcut = model.get_layer("stage2_block1_shortcut")(x).numpy()
    np.testing.assert_array_equal(y[..., :16], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(shortcut[..., 8:24], x[:, ::2, ::2, :])


def _fan_out_std(kernel):
    k_h, k_w, _, c_out = kernel.shape
    return np.sqrt(2.0 / (k_h * k_w * c_out))


@pytest.mark.parametrize(
    "build, bias",
    [
        (lambda: models.cifar_resnet(20, seed=0), "zeros"),
        (lambda: models.wide_resnet(16, 2, seed=0), "zeros"),
        (lambda: models.resnet50(seed=0), "uniform"),
    ],
)
def test_initialisation_follows_the_references(build, bias):
    """Conv kernels N(0, 2/(k*k*C_out)) (fb.resnet.torch, WRN's MSRinit,
    torchvision's fan_out), not truncated; the classifier's weights uniform
    +-1/sqrt(fan_in); its bias zero (Torch) or uniform (torchvision)."""
    model = build()
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    for conv in convs:
        w = conv.kernel.numpy()
        sigma = _fan_out_std(w)
        assert abs(w.std() / sigma - 1) < 5 / np.sqrt(2 * w.size) + 1e-3, conv.name
        # untruncated: a normal sample this large reaches past 2 sigma
        assert np.abs(w).max() > 2 * sigma, conv.name
    dense = model.get_layer("classifier")
    bound = 1 / np.sqrt(dense.kernel.shape[0])
    w = dense.kernel.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    b = dense.bias.numpy()
    if bias == "zeros":
        assert not b.any()
    else:
        assert np.abs(b).max() <= bound and b.std() > bound / 3


def test_resnet50_starts_with_torchvisions_channel_norms():
    """Channel norms of N(0, 2/fan_out) kernels: sqrt(2 fan_in / fan_out)."""
    from keras_normloss import channel_norms

    model = models.resnet50(seed=0)
    for name, expected in (
        ("stem_conv", np.sqrt(2 * 147 / (49 * 64))),  # 0.31
        ("stage1_block1_conv3", np.sqrt(2 * 64 / 256)),  # 0.71
        ("stage2_block2_conv1", np.sqrt(2 * 512 / 128)),  # 2.83
    ):
        norms_ = np.asarray(channel_norms(model.get_layer(name).kernel))
        assert np.mean(norms_) == pytest.approx(expected, rel=0.03), name


def test_wide_resnet_dropout_is_seeded():
    a = models.wide_resnet(16, 1, dropout=0.3, seed=0)
    b = models.wide_resnet(16, 1, dropout=0.3, seed=0)
    x = np.ones((2, 32, 32, 3), "float32")
    np.testing.assert_array_equal(a(x, training=True).numpy(), b(x, training=True).numpy())


def test_batch_norm_gamma_follows_the_references():
    """fb.resnet.torch and torchvision set gamma to 1; the WRN code keeps Torch's
    default U(0, 1)."""
    resnet = models.cifar_resnet(20, seed=0)
    wrn = models.wide_resnet(16, 1, seed=0)
    gammas = lambda m: np.concatenate(  # noqa: E731
        [l.gamma.numpy() for l in m.layers if isinstance(l, keras.layers.BatchNormalization)]
    )
    assert np.all(gammas(resnet) == 1.0)
    g = gammas(wrn)
    assert g.min() >= 0 and g.max() < 1 and abs(g.mean() - 0.5) < 0.1


@pytest.mark.parametrize("name", ["resnet8", "resnet20", "wrn16_4"])
def test_cifar_models_take_28_pixel_grey_images(name):
    """Fashion-MNIST and MNIST: 28x28x1 goes 28 -> 14 -> 7 through the three stages, as 32
    goes 32 -> 16 -> 8 (explicit symmetric padding and option-A subsampling agree)."""
    model = models.get(name, num_classes=10, input_shape=(28, 28, 1), seed=0)
    pooled = next(l for l in model.layers if isinstance(l, keras.layers.GlobalAveragePooling2D))
    assert tuple(pooled.input.shape[1:3]) == (7, 7)
    x = tf.random.stateless_normal((2, 28, 28, 1), seed=(1, 2))
    logits = model(x, training=True)
    assert logits.shape == (2, 10) and np.all(np.isfinite(logits.numpy()))
