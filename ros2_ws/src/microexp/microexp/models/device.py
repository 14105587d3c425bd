"""Which torch device to run on: ``auto``, ``cpu`` or ``cuda[:N]``, checked against what torch sees.

torch is imported when a device is resolved, not when this module is imported.
"""

from __future__ import annotations

from microexp.errors import ParameterError

__all__ = ["resolve_device"]


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(f"device {device!r}: torch sees no CUDA GPU here (use 'auto' or 'cpu')")
    if device != "cpu" and not device.startswith("cuda"):
        raise ParameterError(f"device {device!r}: expected auto, cpu or cuda[:N]")
    return device
