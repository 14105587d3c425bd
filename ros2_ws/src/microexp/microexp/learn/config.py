"""What defines a training run of ``microexp train``: :class:`TrainConfig` and its two presets, ``paper`` and
``cpu`` (:func:`make_config`; the module docstring of :mod:`microexp.learn.train` describes them).

The architectures (names, learning rates, how each is built) are :mod:`microexp.models.registry`'s; nothing
here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from microexp.errors import ParameterError
from microexp.models.registry import MODEL_NAMES, model_kind

MODELS = MODEL_NAMES
MODALITIES = ("events", "rgb")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in config.json and in every checkpoint)."""

    model: str = "snn"
    modality: str = "events"
    sensor: str = "davis346"  # event sensor(s), comma-separated: clips of each are separate samples
    config: str = "cpu"
    epochs: int = 24
    batch_size: int = 8
    lr: float = 1e-3
    dropout: float = 0.2
    loss: str = "mse"
    scheduler: str = "cosine"
    slices: int = 16
    jitter: int = 3
    shift_px: int = 4
    mirror: bool = True
    init_tau: float = 2.0  # PLIF membrane time constant at initialisation (SNN; learnt afterwards)
    seed: int = 0

    def __post_init__(self) -> None:
        model_kind(self.model, "--model")
        if self.modality not in MODALITIES:
            raise ParameterError(f"--modality must be one of {', '.join(MODALITIES)}, got {self.modality!r}")
        if self.slices < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ParameterError("slices, epochs and batch size must be >= 1")

    @property
    def sensors(self) -> list[str]:
        return [s.strip() for s in self.sensor.split(",") if s.strip()]

    @property
    def in_channels(self) -> int:
        return 2 if self.modality == "events" else 3

    def build_model(self):
        """A freshly initialised model of this run's architecture, input channels, dropout and ``init_tau``."""
        return model_kind(self.model, "--model").build(
            in_channels=self.in_channels, dropout=self.dropout, init_tau=self.init_tau
        )


def make_config(model: str, modality: str, config: str = "cpu", sensor: str = "davis346", **overrides) -> TrainConfig:
    """The ``paper`` or ``cpu`` configuration of the module docstring, with ``overrides`` (None ignored)."""
    kind = model_kind(model, "--model")
    lr = kind.lr
    if config == "paper":
        base = dict(epochs=100, batch_size=8, lr=lr, dropout=0.2, slices=75, jitter=0, shift_px=0, mirror=False)
    elif config == "cpu":
        # augmentation: start jitter only. Shifts (±3–4 px) and the left-right mirror were tried on the folds
        # S01, S02 and did not help (docs/offline.md, "choosing the cpu configuration")
        base = dict(
            epochs=kind.cpu_epochs, batch_size=8, lr=lr, dropout=0.2, slices=16, jitter=2, shift_px=0, mirror=False
        )
    else:
        raise ParameterError(f"--config must be 'paper' or 'cpu', got {config!r}")
    base.update({k: v for k, v in overrides.items() if v is not None})
    if not (isinstance(base["lr"], (int, float)) and math.isfinite(base["lr"]) and 0 < base["lr"] <= 10):
        raise ParameterError(f"--lr must be a number in (0, 10], got {base['lr']!r}")
    for key in ("epochs", "batch_size", "slices"):
        if int(base[key]) < 1:
            raise ParameterError(f"--{key.replace('_', '-')} must be >= 1, got {base[key]}")
    return TrainConfig(model=model, modality=modality, sensor=sensor, config=config, **base)
