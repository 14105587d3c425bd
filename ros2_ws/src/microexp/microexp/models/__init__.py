"""Models of microexp (no I/O here except in :mod:`microexp.models.checkpoint`; no rclpy anywhere).

- :mod:`~microexp.models.plif`: the PLIF spiking neuron (plain torch, spikingjelly-equivalent).
- :mod:`~microexp.models.snn`: :class:`AUSpikingNet`, the paper's SNN for AU recognition (4,312,470 parameters).
- :mod:`~microexp.models.cnn3d`: :class:`C3DNet`, the C3D-style 3D-CNN baseline.
- :mod:`~microexp.models.cvae`: :class:`ConditionalVAE`, event-conditioned frame reconstruction.
- :mod:`~microexp.models.checkpoint`: one checkpoint format that rebuilds any of them.
"""
from microexp.models.checkpoint import (
    ARCHITECTURES,
    CheckpointArchitectureError,
    CheckpointError,
    CheckpointFormatError,
    CheckpointNotFoundError,
    CheckpointStateError,
    describe_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from microexp.models.cnn3d import C3DNet, CNN3DConfig
from microexp.models.cvae import ConditionalVAE, CVAEConfig, cvae_loss
from microexp.models.plif import PLIFNode
from microexp.models.snn import AUSpikingNet, SNNConfig, SequenceDropout, count_parameters

__all__ = [
    "ARCHITECTURES",
    "AUSpikingNet",
    "C3DNet",
    "CNN3DConfig",
    "CVAEConfig",
    "CheckpointArchitectureError",
    "CheckpointError",
    "CheckpointFormatError",
    "CheckpointNotFoundError",
    "CheckpointStateError",
    "ConditionalVAE",
    "PLIFNode",
    "SNNConfig",
    "SequenceDropout",
    "count_parameters",
    "cvae_loss",
    "describe_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]
