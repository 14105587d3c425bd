"""Live Action Unit inference without ROS: the streaming pipeline, face tracking, smoothing.

- this package: :func:`load_au_model` (checkpoint -> model, with the checks the live node needs),
  :func:`default_model_path`, :func:`model_id`.
- :mod:`~microexp.infer.pipeline`: :class:`StreamingAUPipeline` (events -> one prediction per 33 ms window),
  :func:`offline_probabilities` (the same numbers by multi-step inference, for checks and offline tools).
- :mod:`~microexp.infer.face`: face detection (:mod:`microexp.vision.face`) on its own thread, box smoothing and
  cross-sensor mapping.
- :mod:`~microexp.infer.smoothing`: probabilities from the SNN output, the horizon smoother, latency statistics.

The submodules import torch; this package itself does not (``microexp --help`` stays fast).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from microexp.aus import AU_LABELS
from microexp.models.device import resolve_device

DEFAULT_MODEL_NAME = "au_snn_default.pt"
"""File name of the default checkpoint (made by ``microexp train --final`` and ``microexp export``)."""


def default_model_path() -> Path:
    """Where the default checkpoint lives: ``$MICROEXP_MODELS_DIR`` (the Docker image sets it), else the
    repository's ``models/`` folder."""
    env = os.environ.get("MICROEXP_MODELS_DIR")
    base = Path(env) if env else Path(__file__).resolve().parents[5] / "models"
    return base / DEFAULT_MODEL_NAME


def model_id(path) -> str:
    """``<file name>@<first 12 hex digits of its sha256>``: names the exact weights in every prediction."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{Path(path).name}@{h.hexdigest()[:12]}"


def load_au_model(path, device: str = "cpu"):
    """The AU SNN of checkpoint ``path`` on ``device``, in eval mode, checked for live use.

    Returns ``(model, meta, model_id)``. Raises the checkpoint loader's one-line errors
    (:class:`~microexp.models.CheckpointNotFoundError`, ``...FormatError``, ``...ArchitectureError`` for
    a 3D-CNN or cVAE, ``...StateError``), and :class:`~microexp.models.CheckpointError` for an SNN that
    does not take 2-channel event frames or does not output the 21 AUs in the order of :mod:`microexp.aus`.
    """
    from microexp.models import CheckpointError, load_checkpoint  # torch: imported when a model is loaded

    if not str(path):
        raise CheckpointError(path, "no model given")
    device = resolve_device(device)
    model, meta = load_checkpoint(path, map_location=device, expected="snn")
    config = meta["config"]
    if config.in_channels != 2:
        raise CheckpointError(
            path, f"is an SNN for {config.in_channels}-channel input; live inference feeds 2-channel event frames"
        )
    if list(meta.get("classes", [])) != list(AU_LABELS):
        raise CheckpointError(
            path, f"classes {list(meta.get('classes', []))[:5]}... are not the 21 AUs in microexp order"
        )
    return model, meta, model_id(path)


__all__ = ["DEFAULT_MODEL_NAME", "default_model_path", "load_au_model", "model_id"]
