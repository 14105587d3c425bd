"""Models of microexp (no I/O here except in :mod:`microexp.models.checkpoint`; no rclpy anywhere).

- :mod:`~microexp.models.plif`: the PLIF spiking neuron (plain torch, spikingjelly-equivalent).
- :mod:`~microexp.models.snn`: :class:`AUSpikingNet`, the paper's SNN for AU recognition (4,312,470 parameters).
- :mod:`~microexp.models.cnn3d`: :class:`C3DNet`, the C3D-style 3D-CNN baseline.
- :mod:`~microexp.models.cvae`: :class:`ConditionalVAE`, event-conditioned frame reconstruction.
- :mod:`~microexp.models.checkpoint`: one checkpoint format that rebuilds any of them.
- :mod:`~microexp.models.registry`: the AU classifiers by name (:func:`build_model`, one scoring rule each).
- :mod:`~microexp.models.device`: :func:`resolve_device` (``auto`` / ``cpu`` / ``cuda[:N]``).

The names below are imported from their submodule on first use, so that importing this package (or its
torch-free submodules, :mod:`.registry` and :mod:`.device`) does not import torch.
"""

from __future__ import annotations

import importlib

#: public name -> the submodule that defines it (read by tests/test_structure.py's import-circle check)
_SUBMODULE_OF = {
    "ARCHITECTURES": "checkpoint",
    "CheckpointArchitectureError": "checkpoint",
    "CheckpointError": "checkpoint",
    "CheckpointFormatError": "checkpoint",
    "CheckpointNotFoundError": "checkpoint",
    "CheckpointStateError": "checkpoint",
    "describe_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "C3DNet": "cnn3d",
    "CNN3DConfig": "cnn3d",
    "CVAEConfig": "cvae",
    "ConditionalVAE": "cvae",
    "cvae_loss": "cvae",
    "PLIFNode": "plif",
    "AUSpikingNet": "snn",
    "SNNConfig": "snn",
    "SequenceDropout": "snn",
    "count_parameters": "snn",
    "AU_MODELS": "registry",
    "MODEL_NAMES": "registry",
    "build_model": "registry",
    "model_kind": "registry",
    "resolve_device": "device",
}
_SUBMODULES = ("checkpoint", "cnn3d", "cvae", "device", "plif", "registry", "snn", "snn_fused", "snn_graph")

__all__ = sorted(_SUBMODULE_OF)


def __getattr__(name: str):
    if name in _SUBMODULE_OF:
        value = getattr(importlib.import_module(f"{__name__}.{_SUBMODULE_OF[name]}"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBMODULE_OF) | set(_SUBMODULES))
