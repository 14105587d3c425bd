"""The AU classifiers by name: how each is built and how it scores a batch of clips.

``build_model(name, in_channels, dropout, init_tau)`` builds one; :func:`model_kind` finds the entry of a
name or of a built model (also inside ``DistributedDataParallel``), whose :meth:`AUModel.scores` turns a
batch of windows ``[B, T, C, S, S]`` into class scores in [0, 1]. An unknown name is a
:class:`~microexp.errors.ParameterError` that lists the known ones.

This module imports torch only when a model is built or recognised, so that command-line parsers can list
:data:`MODEL_NAMES` without it.
"""

from __future__ import annotations

from microexp.errors import ParameterError

__all__ = ["AUModel", "AU_MODELS", "MODEL_NAMES", "build_model", "model_kind"]


class AUModel:
    """One AU classifier architecture (subclasses: one per architecture)."""

    #: the name on the command line, in training configurations and in checkpoints
    name: str = ""
    #: the name in results tables (the paper's Table 5)
    label: str = ""
    #: Adam learning rate of the paper's configuration (§5)
    lr: float = 1e-3
    #: epochs of the reduced ``cpu`` training configuration
    cpu_epochs: int = 10

    @property
    def model_class(self) -> type:
        """The torch module class (imports torch)."""
        raise NotImplementedError

    def build(self, in_channels: int = 2, dropout: float = 0.2, init_tau: float = 2.0):
        """A freshly initialised model (torch's global generator draws the weights)."""
        raise NotImplementedError

    def scores(self, model, x):
        """Class scores ``[B, num_classes]`` in [0, 1] of windows ``x`` ``[B, T, C, S, S]``; ``model`` may be
        wrapped (DistributedDataParallel): it is called, never unwrapped, so that gradients synchronise."""
        raise NotImplementedError

    def reset(self, model) -> None:
        """Leave ``model`` (or the model inside a wrapper) without state from the last batch."""


class SpikingAUModel(AUModel):
    """The paper's SNN (§4.3): scores are its time-averaged voting activations."""

    name, label = "snn", "SNN"
    lr, cpu_epochs = 1e-3, 24

    @property
    def model_class(self) -> type:
        from microexp.models.snn import AUSpikingNet  # torch: imported when a model is built or recognised

        return AUSpikingNet

    def build(self, in_channels: int = 2, dropout: float = 0.2, init_tau: float = 2.0):
        from microexp.models.snn import SNNConfig

        return self.model_class(SNNConfig(in_channels=in_channels, dropout=dropout, init_tau=init_tau))

    def scores(self, model, x):
        return model(x.transpose(0, 1))  # [T, B, C, S, S]

    def reset(self, model) -> None:
        getattr(model, "module", model).reset()


class Conv3dAUModel(AUModel):
    """The C3D-style 3D-CNN baseline: scores are the softmax of its logits (logits are unbounded)."""

    name, label = "cnn3d", "3DCNN"
    lr, cpu_epochs = 1e-4, 10

    @property
    def model_class(self) -> type:
        from microexp.models.cnn3d import C3DNet  # torch: imported when a model is built or recognised

        return C3DNet

    def build(self, in_channels: int = 2, dropout: float = 0.2, init_tau: float = 2.0):
        """``init_tau`` has no meaning here (no spiking neurons)."""
        from microexp.models.cnn3d import CNN3DConfig

        return self.model_class(CNN3DConfig(in_channels=in_channels, dropout=dropout))

    def scores(self, model, x):
        return model(x.permute(0, 2, 1, 3, 4)).softmax(-1)  # [B, C, T, S, S]


#: name -> architecture, in the order of the command line's choices
AU_MODELS: dict[str, AUModel] = {kind.name: kind for kind in (SpikingAUModel(), Conv3dAUModel())}
MODEL_NAMES: tuple[str, ...] = tuple(AU_MODELS)


def model_kind(model_or_name, parameter: str = "model") -> AUModel:
    """The entry of a model name, or of a built model (unwrapped from ``.module``); ``parameter`` names the
    setting in the error raised for anything else."""
    if isinstance(model_or_name, str):
        kind = AU_MODELS.get(model_or_name)
        if kind is None:
            raise ParameterError(f"{parameter} must be one of {', '.join(MODEL_NAMES)}, got {model_or_name!r}")
        return kind
    inner = getattr(model_or_name, "module", model_or_name)
    for kind in AU_MODELS.values():
        if isinstance(inner, kind.model_class):
            return kind
    raise ParameterError(
        f"{parameter}: a {type(inner).__name__} is none of the AU classifiers "
        f"({', '.join(k.model_class.__name__ for k in AU_MODELS.values())})"
    )


def build_model(name: str, in_channels: int = 2, dropout: float = 0.2, init_tau: float = 2.0):
    """A new AU classifier ``name`` (one of :data:`MODEL_NAMES`) for ``in_channels`` input channels."""
    return model_kind(name).build(in_channels=in_channels, dropout=dropout, init_tau=init_tau)
