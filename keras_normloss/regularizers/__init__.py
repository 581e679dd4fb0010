"""Penalties added to the loss (Keras regularizers): Norm Loss, weight decay, SO and SRIP.

penalties.py   NormLoss, weight_decay (coupled, the paper's and PyTorch's convention),
               SoftOrthogonality and SRIP (Bansal et al., NeurIPS 2018)
"""

from keras_normloss.regularizers.penalties import SRIP, NormLoss, SoftOrthogonality, weight_decay

__all__ = ["NormLoss", "SRIP", "SoftOrthogonality", "weight_decay"]
