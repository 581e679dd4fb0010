"""Every public name has a Keras-style docstring with a runnable-looking example."""

import inspect
import pathlib

import pytest

import keras_normloss
from keras_normloss import (
    batch_norm,
    callbacks,
    data,
    methods,
    models,
    norm_dynamics,
    optimizers,
    schedules,
    train,
)
from keras_normloss.methods import norm_theory
from keras_normloss.plotting import grid_plots, plots
from keras_normloss.training import presets, sweep

PUBLIC = [
    getattr(keras_normloss, name)
    for name in keras_normloss.__all__
    if not inspect.ismodule(getattr(keras_normloss, name))
] + [
    methods.get,
    methods.names,
    methods.layer_selector,
    optimizers.NormLossSGD,
    optimizers.extend_with_normloss,
    optimizers.channel_axes_by_path,
    batch_norm.PreciseBatchNorm,
    batch_norm.recompute_statistics,
    batch_norm.batch_norm_layers,
    callbacks.NormMonitor,
    callbacks.NormDynamics,
    callbacks.kernel_norm_statistics,
    norm_dynamics.angles,
    norm_dynamics.channel_rows,
    norm_dynamics.step_statistics,
    norm_theory.relaxation_steps,
    norm_theory.timescale,
    norm_theory.timescale_warning,
    norm_theory.equilibrium_angular_update,
    norm_theory.equilibrium_norm,
    norm_theory.predicted_angle,
    norm_theory.equilibrium_groups,
    schedules.mean_learning_rate,
    schedules.ConstantLearningRate,
    plots.plot_dynamics,
    data.load,
    data.cifar,
    data.imagenet,
    data.synthetic,
    data.mnist_like,
    data.tfds_dataset,
    data.image_folder,
    models.get,
    models.names,
    models.cifar_resnet,
    models.wide_resnet,
    models.resnet50,
    presets.get,
    train.make_config,
    train.run,
    sweep.sweep,
    plots.plot_runs,
    plots.plot_sweeps,
    grid_plots.plot_grid,
    schedules.make_schedule,
    schedules.LinearWarmup,
    data.validation.split_indices,
    sweep.choose_factor,
]
DOCUMENTED_WITHOUT_EXAMPLE = {"AttachReport", "UnsupportedLayerError"}  # data / exception classes


@pytest.mark.parametrize("obj", PUBLIC, ids=lambda o: o.__name__)
def test_public_name_has_summary_and_example(obj):
    doc = inspect.getdoc(obj)
    assert doc, f"{obj.__name__} has no docstring"
    summary = doc.splitlines()[0]
    assert summary.endswith(".") and len(summary) <= 100, summary
    if obj.__name__ not in DOCUMENTED_WITHOUT_EXAMPLE:
        assert "Example:" in doc and "```python" in doc, obj.__name__
    if inspect.isfunction(obj) and inspect.signature(obj).parameters:
        assert "Args:" in doc, obj.__name__


def test_the_results_page_says_what_each_preset_has_run():
    """docs/results.md's "The presets" list is the presets' own `run_here` (it had drifted)."""
    page = (pathlib.Path(__file__).parents[1] / "docs" / "results.md").read_text()
    for name, preset in presets.PRESETS.items():
        assert f"- `{name}`: {preset.run_here}\n" in page, name
