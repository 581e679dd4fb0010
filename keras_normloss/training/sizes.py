"""Sizes that cannot fit, refused before any work: steps per epoch and the batch against the
data, and the batch against the memory.

A batch larger than the training split, or more steps than one pass over it, used to build
tens of millions of graph operations (hanging for minutes, deaf to signals) or to run out of
memory in C++ (a segmentation fault after a minute, exit status 139). Each is bad input: one
line, exit status 2, nothing written.
"""

import math

from keras_normloss import errors

# Activations kept for the backward pass, and their gradients while it runs: about twice the
# outputs of every layer (a lower bound: TensorFlow's workspace comes on top).
_TRAINING_COPIES = 2


def _plural(n, word):
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def available_memory():
    """Bytes of memory this process can still take (Linux: MemAvailable, within a cgroup's
    limit), or None where it cannot be told."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            with open(limit_file) as f, open(usage_file) as g:
                limit, usage = f.read().strip(), int(g.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            available = min(available or math.inf, int(limit) - usage)
        break
    return available


def activation_bytes_per_example(model):
    """The bytes of every layer's output for one example (float32 or the compute dtype), or
    None for a model whose layers' outputs are not known (a subclassed model)."""
    total = 0
    try:
        for layer in model.layers:
            shape = layer.output.shape[1:]
            if any(d is None for d in shape):
                return None
            itemsize = 2 if "16" in str(getattr(layer, "compute_dtype", "float32")) else 4
            total += math.prod(shape) * itemsize
    except (AttributeError, ValueError, TypeError):
        return None
    return total or None


def check_sizes(config, info, model=None, memory=None):
    """Refuses steps per epoch and batch sizes that cannot fit.

    Without `model`: `--steps-per-epoch` must be at most one pass over the training split (the
    flag is a cap, as its help says) and `--batch-size` at most the split. With `model`: the
    activations of a replica's batch must fit the memory available (checked on CPUs; a GPU's
    memory is not known before it is used).

    Args:
        config: the `RunConfig`.
        info: the dataset's `DataInfo`.
        model: the built model, or None.
        memory: the bytes available (default: `available_memory()`), for tests.

    Raises:
        keras_normloss.errors.UsageError: for a size that cannot fit.
    """
    if model is None:
        batch, examples = config.batch_size, info.train_examples
        if batch > examples:
            raise errors.UsageError(
                f"--batch-size {batch:,} is larger than the training split of {info.name} "
                f"({_plural(examples, 'image')}); choose at most {examples:,}"
            )
        one_pass = info.steps_per_epoch(batch)
        if config.steps_per_epoch and config.steps_per_epoch > one_pass:
            raise errors.UsageError(
                f"--steps-per-epoch {config.steps_per_epoch:,} is more than one pass over the "
                f"training split ({_plural(examples, 'image')} at batch {batch:,}: "
                f"{_plural(one_pass, 'step')}); give at most {one_pass:,}, or leave it out for "
                "one pass"
            )
        return
    from keras_normloss.training.distribution import has_gpu

    if has_gpu():
        return
    per_example = activation_bytes_per_example(model)
    memory = available_memory() if memory is None else memory
    if per_example is None or memory is None:
        return
    # Replicas on CPU devices share the machine's memory: the global batch counts.
    needed = _TRAINING_COPIES * per_example * config.batch_size
    if needed > memory:
        fits = max(1, memory // (_TRAINING_COPIES * per_example))
        raise errors.UsageError(
            f"--batch-size {config.batch_size:,} needs about {needed / 2**30:.1f} GiB of memory "
            f"for {config.model}'s activations, and {memory / 2**30:.1f} GiB are available; "
            f"choose at most about {fits:,}"
        )
