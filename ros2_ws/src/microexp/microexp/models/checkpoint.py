"""One checkpoint format for every microexp model: the file carries what is needed to rebuild the model.

A checkpoint is a ``torch.save`` of a plain dict that ``torch.load(weights_only=True)`` reads (only dicts,
lists, strings, numbers, booleans, None and tensors)::

    format        "microexp-checkpoint-1"
    architecture  "snn" | "cnn3d" | "cvae"
    config        the model's config dataclass as a dict (tuples stored as lists)
    state_dict    the model's state dict
    parameters    number of parameter scalars
    classes       class labels in output order ("AU2", ..., "AU64"); [] for the cVAE
    extra         free-form: metrics, training arguments, data set description, ...
    software      {"microexp": version, "torch": version} that wrote the file

Example
-------
>>> save_checkpoint("runs/snn.pt", model, model.config, extra={"val_acc": 0.51})
>>> model, meta = load_checkpoint("runs/snn.pt", expected="snn")
>>> describe_checkpoint("runs/snn.pt")["parameters"]
4312470
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import nn

import microexp
from microexp.aus import AU_LABELS
from microexp.errors import FormatError, MicroexpError, ParameterError, input_file
from microexp.models.cnn3d import C3DNet, CNN3DConfig
from microexp.models.cvae import ConditionalVAE, CVAEConfig
from microexp.models.snn import AUSpikingNet, SNNConfig, count_parameters

FORMAT = "microexp-checkpoint-1"
#: architecture name -> (model class, config class)
ARCHITECTURES: dict[str, tuple[type[nn.Module], type]] = {
    "snn": (AUSpikingNet, SNNConfig),
    "cnn3d": (C3DNet, CNN3DConfig),
    "cvae": (ConditionalVAE, CVAEConfig),
}
_LISTED_KEYS = 8  # how many offending state-dict keys an error message names

PathLike = Union[str, os.PathLike]


class CheckpointError(MicroexpError):
    """A checkpoint that cannot be used; the message starts with its path."""

    def __init__(self, path: PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        Exception.__init__(self, f"{self.path}: {reason}")


class CheckpointNotFoundError(CheckpointError):
    """No file at the given path."""


class CheckpointFormatError(CheckpointError, FormatError):
    """The file is not a microexp checkpoint, or is corrupted (truncated, wrong fields)."""

    offset = None


class CheckpointArchitectureError(CheckpointError):
    """The checkpoint holds another architecture than the caller expects."""

    def __init__(self, path: PathLike, expected: str, found: str):
        self.expected, self.found = expected, found
        super().__init__(path, f"holds a {found!r} model but a {expected!r} model is expected")


class CheckpointStateError(CheckpointError):
    """The stored weights do not fit the model that the stored config builds."""

    def __init__(self, path: PathLike, missing: Sequence[str], unexpected: Sequence[str], mismatched: Sequence[str]):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        parts = []
        groups = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
        for label, keys in groups:
            if keys:
                shown = ", ".join(keys[:_LISTED_KEYS])
                if len(keys) > _LISTED_KEYS:
                    shown += f", ... ({len(keys)} in all)"
                parts.append(f"{label}: {shown}")
        super().__init__(path, "state_dict does not match the model: " + "; ".join(parts))


def architecture_of(model: nn.Module) -> str:
    """Architecture name ("snn", "cnn3d", "cvae") of a model instance."""
    for name, (model_cls, _) in ARCHITECTURES.items():
        if isinstance(model, model_cls):
            return name
    raise ParameterError(
        f"cannot checkpoint a {type(model).__name__}: expected one of "
        + ", ".join(cls.__name__ for cls, _ in ARCHITECTURES.values())
    )


def _plain(value: Any, where: str) -> Any:
    """``value`` as weights_only-loadable data (dataclasses, Namespaces, paths and numpy scalars converted)."""
    if value is None:
        return None
    for plain_type in (bool, int, float, str):  # also turns str/int subclasses (TorchVersion, IntEnum) plain
        if isinstance(value, plain_type):
            return plain_type(value)
    if isinstance(value, torch.Tensor):
        return value.detach()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value), where)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping) or type(value).__name__ == "Namespace":
        items = value.items() if isinstance(value, Mapping) else vars(value).items()
        out = {}
        for key, item in items:
            if not isinstance(key, str):
                raise ParameterError(f"checkpoint {where}: keys must be strings, got {key!r}")
            out[key] = _plain(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if type(value).__module__ == "numpy":
        return value.item() if getattr(value, "ndim", 1) == 0 else torch.from_numpy(value.copy())
    raise ParameterError(
        f"checkpoint {where}: a {type(value).__name__} cannot be stored "
        "(use dicts, lists, strings, numbers, booleans, None or tensors)"
    )


def save_checkpoint(
    path: PathLike,
    model: nn.Module,
    config: Any = None,
    *,
    extra: Optional[Mapping[str, Any]] = None,
    classes: Optional[Sequence[str]] = None,
) -> Path:
    """Write ``model`` with its config to ``path`` (atomically: a partial file never replaces a good one).

    Parameters
    ----------
    config:
        The config the model was built from; defaults to ``model.config`` and must equal it.
    extra:
        Metrics, training arguments, data set info... Dataclasses, argparse Namespaces, paths and numpy
        scalars are converted; other objects raise :class:`ParameterError`.
    classes:
        Class labels in output order; defaults to the 21 AU labels for classifiers, [] for the cVAE.
    """
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper saves as the model it wraps
    architecture = architecture_of(model)
    config = model.config if config is None else config
    _, config_cls = ARCHITECTURES[architecture]
    if not isinstance(config, config_cls):
        raise ParameterError(
            f"save_checkpoint: a {architecture} model needs a {config_cls.__name__}, got {type(config).__name__}"
        )
    if config != model.config:
        raise ParameterError(f"save_checkpoint: config {config} differs from the model's own {model.config}")
    if classes is None:
        num_classes = getattr(config, "num_classes", 0)
        if num_classes not in (0, len(AU_LABELS)):
            raise ParameterError(f"save_checkpoint: a model with {num_classes} classes needs the classes argument")
        classes = list(AU_LABELS) if num_classes else []
    payload = {
        "format": FORMAT,
        "architecture": architecture,
        "config": _plain(config, "config"),
        "state_dict": dict(model.state_dict()),
        "parameters": count_parameters(model),
        "classes": [str(c) for c in classes],
        "extra": _plain(dict(extra or {}), "extra"),
        "software": {"microexp": str(microexp.__version__), "torch": str(torch.__version__)},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def nonfinite(tensors: Mapping[str, Any], prefix: str = "") -> Optional[str]:
    """Where the first tensor with NaN or infinite values is (nested dicts and lists searched), as
    "tensor NAME holds N NaN and M inf of K values"; None when every floating-point tensor is finite."""
    items = tensors.items() if isinstance(tensors, Mapping) else enumerate(tensors)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() or value.is_complex():
                finite = torch.isfinite(value)
                if not bool(finite.all()):
                    nan = int(torch.isnan(value).sum())
                    return f"tensor {name!r} holds {nan} NaN and {int((~finite).sum()) - nan} inf of {value.numel()} values"
        elif isinstance(value, (Mapping, list, tuple)):
            found = nonfinite(value, f"{name}.")
            if found:
                return found
    return None


def _read(path: PathLike, map_location: Any, mmap: bool = False) -> dict:
    """The validated checkpoint dict at ``path``."""
    if not os.path.exists(path):
        raise CheckpointNotFoundError(path, "no such checkpoint file")
    try:
        input_file(path, "checkpoint")
    except FormatError as exc:
        raise CheckpointFormatError(path, exc.reason) from None
    try:
        data = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # torch.load reports bad files through many exception types
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        # weights_only refusals put the useful line ("Unsupported global: ...") after a long preamble
        detail = next((line for line in lines if line.startswith("WeightsUnpickler error")), lines[0])
        detail = detail.split(". ")[0][:200]
        raise CheckpointFormatError(
            path, f"not a microexp checkpoint or corrupted: torch.load failed ({type(exc).__name__}: {detail})"
        ) from exc
    if not isinstance(data, dict) or "format" not in data:
        raise CheckpointFormatError(path, "not a microexp checkpoint: no 'format' field")
    if data["format"] != FORMAT:
        raise CheckpointFormatError(
            path, f"unsupported checkpoint format {data['format']!r} (this microexp reads {FORMAT!r})"
        )
    fields = ("architecture", "config", "state_dict", "parameters", "classes", "extra")
    missing = [key for key in fields if key not in data]
    if missing:
        raise CheckpointFormatError(path, f"corrupted microexp checkpoint: missing fields {missing}")
    if data["architecture"] not in ARCHITECTURES:
        raise CheckpointFormatError(
            path, f"unknown architecture {data['architecture']!r} (known: {', '.join(ARCHITECTURES)})"
        )
    if not isinstance(data["config"], dict) or not isinstance(data["extra"], dict):
        raise CheckpointFormatError(path, "corrupted microexp checkpoint: 'config' and 'extra' must be dicts")
    state = data["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointFormatError(path, "corrupted microexp checkpoint: 'state_dict' must map names to tensors")
    bad = nonfinite(state)
    if bad:
        raise CheckpointFormatError(path, f"{bad}: the training diverged or the file is damaged; not used")
    return data


def _build_config(path: PathLike, architecture: str, stored: dict, overrides: Optional[Mapping[str, Any]]) -> Any:
    _, config_cls = ARCHITECTURES[architecture]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    values = {**stored, **dict(overrides or {})}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise CheckpointFormatError(
            path, f"{architecture} config has unknown fields {unknown} (written by a newer microexp?)"
        )
    try:
        return config_cls(**values)
    except (MicroexpError, TypeError, ValueError) as exc:
        raise CheckpointFormatError(path, f"invalid {architecture} config: {exc}") from exc


def load_checkpoint(
    path: PathLike,
    map_location: Any = "cpu",
    *,
    expected: Optional[str] = None,
    config_overrides: Optional[Mapping[str, Any]] = None,
) -> tuple[nn.Module, dict]:
    """Rebuild the model stored at ``path``.

    Parameters
    ----------
    map_location:
        Where the tensors go (as for ``torch.load``); the model is moved there too when it is a device.
    expected:
        Architecture the caller needs ("snn", "cnn3d", "cvae"); another one raises
        :class:`CheckpointArchitectureError`.
    config_overrides:
        Config fields to replace that do not change the weights, e.g. ``{"neuron": "plif"}`` to run a model
        trained with the spikingjelly kernels without spikingjelly.

    Returns
    -------
    (model, meta): the model in eval mode, and the checkpoint's fields except the state dict, with
    ``config`` as the config dataclass.

    Raises
    ------
    CheckpointNotFoundError, CheckpointFormatError, CheckpointArchitectureError, CheckpointStateError
    """
    if expected is not None and expected not in ARCHITECTURES:
        raise ParameterError(f"load_checkpoint: expected must be one of {', '.join(ARCHITECTURES)}, got {expected!r}")
    data = _read(path, map_location)
    architecture = data["architecture"]
    if expected is not None and architecture != expected:
        raise CheckpointArchitectureError(path, expected, architecture)
    config = _build_config(path, architecture, data["config"], config_overrides)
    model_cls, _ = ARCHITECTURES[architecture]
    model = model_cls(config)
    own = model.state_dict()
    stored = data["state_dict"]
    missing = sorted(set(own) - set(stored))
    unexpected = sorted(set(stored) - set(own))
    mismatched = [
        f"{key} {tuple(stored[key].shape)} vs {tuple(own[key].shape)}"
        for key in sorted(set(own) & set(stored))
        if stored[key].shape != own[key].shape
    ]
    if missing or unexpected or mismatched:
        raise CheckpointStateError(path, missing, unexpected, mismatched)
    model.load_state_dict(stored)
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    model.eval()
    meta = {key: value for key, value in data.items() if key != "state_dict"}
    meta["config"] = config
    return model, meta


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        if value.numel() <= 64:
            return value.tolist()
        return {"tensor": list(value.shape), "dtype": str(value.dtype).replace("torch.", "")}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def describe_checkpoint(path: PathLike) -> dict:
    """JSON-ready summary of a checkpoint without building the model (for ``microexp info``).

    Keys: path, file_bytes, format, architecture, parameters, config, classes, extra, software, tensors
    (number of state-dict entries). Tensors in ``extra`` with more than 64 values are summarised by shape.
    """
    try:
        data = _read(path, "cpu", mmap=True)
    except CheckpointFormatError:
        data = _read(path, "cpu", mmap=False)  # files written without the zip container cannot be mapped
    return {
        "path": os.fspath(path),
        "file_bytes": os.path.getsize(path),
        "format": data["format"],
        "architecture": data["architecture"],
        "parameters": int(data["parameters"]),
        "config": _jsonable(data["config"]),
        "classes": list(data["classes"]),
        "extra": _jsonable(data["extra"]),
        "software": _jsonable(data.get("software", {})),
        "tensors": len(data["state_dict"]),
    }
