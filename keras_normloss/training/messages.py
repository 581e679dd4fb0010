"""What a run says: the line it ends with, and where a resumed run starts."""

import os

from keras_normloss.training.run_directory import OUTPUTS


def resume_line(first_epoch, skip_steps, epochs):
    """What a resumed run says of where it starts, from its checkpoint's position.

    Example:

    ```python
    resume_line(1, 40, 5)  # 'resuming at epoch 2, step 40.'
    resume_line(1, 0, 1)  # 'every epoch (1) is trained already: writing the model and results.'
    ```
    """
    if first_epoch >= epochs:  # the checkpoint after the last epoch: killed before the end
        return f"every epoch ({epochs}) is trained already: writing the model and results."
    return f"resuming at epoch {first_epoch + 1}, step {skip_steps}."


def _duration(seconds):
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def summary_line(results, output):
    """The line `train` ends with: final and best test error, epochs, time, where the outputs are.

    Args:
        results: the content of results.json.
        output: the run directory.

    Returns:
        One line of text.

    Example:

    ```python
    summary_line({"final_test_error": 0.1234, "best_test_error": 0.119, "best_epoch": 7,
                  "epochs": 5, "wall_seconds": 83}, "runs/quick")
    # 'keras-normloss train: done: final test error 12.34 % (best 11.90 % at epoch 7; ...'
    ```
    """
    synthetic = " on SYNTHETIC data" if results.get("synthetic_data") else ""
    # tensorboard/ is written only where TensorFlow is installed (`summaries`).
    outputs = [o for o in OUTPUTS if not o.endswith("/") or os.path.isdir(os.path.join(output, o))]
    if results.get("final_validation_error") is not None:
        aside = f"validation error {100 * results['final_validation_error']:.2f} %"
    else:
        aside = (
            f"best {100 * results['best_test_error']:.2f} % at epoch "
            f"{results['best_epoch']}; picked on the test set"
        )
    return (
        f"keras-normloss train: done: final test error {100 * results['final_test_error']:.2f} %"
        f"{synthetic} ({aside}), {results['epochs']} "
        f"epoch{'' if results['epochs'] == 1 else 's'} in "
        f"{_duration(results['wall_seconds'])}; outputs in {output} ({', '.join(outputs)})"
    )
