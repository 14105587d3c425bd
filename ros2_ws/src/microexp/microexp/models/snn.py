"""The spiking network for Action Unit recognition (paper §4.3, Fig. 3).

Layers (defaults; T time steps, B clips, 64 x 64 event frames of 2 polarity channels)::

    conv1  Conv2d(2, 32, 3, stride 1, pad 1, bias=False)      576
    bn1    BatchNorm2d(32)                                     64
    plif1  PLIF                                                 1
    pool1  MaxPool2d(2)                        -> 32 x 32 x 32
    conv2  Conv2d(32, 32, 3, stride 1, pad 1, bias=False)    9,216
    bn2    BatchNorm2d(32)                                     64
    plif2  PLIF                                                 1
    pool2  MaxPool2d(2)                        -> 32 x 16 x 16 = 8192
    drop1  SequenceDropout(0.2)
    fc1    Linear(8192, 512)                            4,194,816
    plif3  PLIF                                                 1
    drop2  SequenceDropout(0.2)
    fc2    Linear(512, 210)                               107,730
    plif4  PLIF                                                 1
    vote   AvgPool1d(10, 10): 210 spikes -> 21 class activations
                                                 total  4,312,470 parameters (= 4.11 Mi, the paper's "4.11M")

Time handling: in multi-step mode the stateless layers (conv, batch norm, pooling, linear) run once over
the T*B frames folded into the batch, and only the PLIF neurons loop over time. Batch norm in training
therefore normalises with statistics over all T*B frames (spikingjelly's multi-step convention); in eval
mode it uses its running statistics and both modes agree. The output is the class activation averaged
over the T steps, which the paper trains with an MSE loss against the one-hot label.

Dropout keeps the same mask across the time steps of a sequence (spikingjelly ``layer.Dropout``,
after Lee et al. 2019): units dropped at the first step stay dropped until :meth:`AUSpikingNet.reset`,
otherwise the dropout would average out over time.

Example
-------
>>> model = AUSpikingNet(SNNConfig()).eval()
>>> scores = model(frames)             # frames [T, B, 2, 64, 64] -> [B, 21]
>>> model.reset()
>>> for frame in frames:                # streaming: the same result after the last step
...     running = model.step(frame)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import nn

from microexp.errors import ParameterError
from microexp.models.plif import PLIFNode, detach_state

NEURONS = {"plif": "torch", "spikingjelly": "spikingjelly"}


@dataclass
class SNNConfig:
    """Hyper-parameters of :class:`AUSpikingNet`; stored in checkpoints to rebuild the model.

    ``neuron`` picks the PLIF implementation: ``"plif"`` (plain torch, :mod:`microexp.models.plif`) or
    ``"spikingjelly"`` (spikingjelly's kernels). The two compute the same function and share state dict keys.
    """

    in_channels: int = 2  # 2 event polarities, or 3 for RGB frames
    input_size: int = 64  # side of the square input frame; must be divisible by 4
    channels: int = 32
    fc_hidden: int = 512
    fc_out: int = 210  # spiking outputs, num_classes groups of fc_out // num_classes for the vote
    num_classes: int = 21
    dropout: float = 0.2
    neuron: str = "plif"
    init_tau: float = 2.0
    v_threshold: float = 1.0
    surrogate_alpha: float = 2.0
    detach_reset: bool = False

    def __post_init__(self) -> None:
        if self.neuron not in NEURONS:
            raise ParameterError(f"SNNConfig.neuron must be one of {sorted(NEURONS)}, got {self.neuron!r}")
        if self.input_size <= 0 or self.input_size % 4:
            raise ParameterError(f"SNNConfig.input_size must be a positive multiple of 4, got {self.input_size}")
        if self.num_classes <= 0 or self.fc_out % self.num_classes:
            raise ParameterError(
                f"SNNConfig.fc_out ({self.fc_out}) must be a multiple of num_classes ({self.num_classes}) for the vote"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ParameterError(f"SNNConfig.dropout must be in [0, 1), got {self.dropout}")
        if not self.init_tau > 1.0:
            raise ParameterError(f"SNNConfig.init_tau must be > 1, got {self.init_tau}")


def _max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """MaxPool2d(2, 2) of [B, C, H, W] (even H, W) as three elementwise maxima of the four phases: the same
    values (max is exact), several times faster than max_pool2d on a small CPU frame, no indices."""
    return torch.maximum(
        torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]), torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2])
    )


class SequenceDropout(nn.Module):
    """Dropout whose mask is drawn once per sequence and reused at every time step.

    Multi-step input is [T, B, ...] and the mask has shape [B, ...]; single steps reuse the mask of the first
    step until :meth:`reset`. Identity in eval mode. Scaling is the usual 1 / (1 - p).
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)
        self.mask: Optional[torch.Tensor] = None

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def reset(self) -> None:
        self.mask = None

    def _mask_for(self, step: torch.Tensor) -> torch.Tensor:
        if self.mask is None or self.mask.shape != step.shape:
            self.mask = torch.nn.functional.dropout(torch.ones_like(step), self.p, training=True)
        return self.mask

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x_seq
        return x_seq * self._mask_for(x_seq[0])

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * self._mask_for(x)

    forward = multi_step


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter scalars (buffers such as batch-norm statistics are not parameters)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class AUSpikingNet(nn.Module):
    """PLIF spiking CNN classifying an event-frame sequence into one of ``num_classes`` Action Units.

    ``forward(x)`` takes a whole clip [T, B, C, H, W] (training, offline evaluation); ``step(x_t)`` takes one
    frame [B, C, H, W] at a time (the live node). See the module docstring for the layers.
    """

    def __init__(self, config: Optional[SNNConfig] = None):
        super().__init__()
        self.config = config = config or SNNConfig()
        c = config.channels
        backend = NEURONS[config.neuron]

        def plif() -> PLIFNode:
            return PLIFNode(
                init_tau=config.init_tau,
                v_threshold=config.v_threshold,
                surrogate_alpha=config.surrogate_alpha,
                detach_reset=config.detach_reset,
                backend=backend,
            )

        self.conv1 = nn.Conv2d(config.in_channels, c, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.plif1 = plif()
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(c, c, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.plif2 = plif()
        self.pool2 = nn.MaxPool2d(2, 2)
        flat = c * (config.input_size // 4) ** 2
        self.drop1 = SequenceDropout(config.dropout)
        self.fc1 = nn.Linear(flat, config.fc_hidden)
        self.plif3 = plif()
        self.drop2 = SequenceDropout(config.dropout)
        self.fc2 = nn.Linear(config.fc_hidden, config.fc_out)
        self.plif4 = plif()
        window = config.fc_out // config.num_classes
        self.vote = nn.AvgPool1d(window, window)
        self._output_sum: Optional[torch.Tensor] = None
        self._steps = 0

    def reset(self) -> None:
        """Forget membranes, dropout masks and the running output average: the next call starts a new clip."""
        for module in self.modules():
            if isinstance(module, (PLIFNode, SequenceDropout)):
                module.reset()
        self._output_sum = None
        self._steps = 0

    def __getstate__(self):
        state = detach_state(dict(super().__getstate__()), ("_output_sum",))
        for name in ("_fc1_t", "_fc1_t_key", "_fused"):
            state.pop(name, None)
        return state

    @property
    def steps(self) -> int:
        """Time steps consumed since the last reset."""
        return self._steps

    def _check_frame(self, frame_shape: torch.Size, what: str) -> None:
        cfg = self.config
        expected = (cfg.in_channels, cfg.input_size, cfg.input_size)
        if tuple(frame_shape) != expected:
            raise ParameterError(f"{what}: frames must be {expected} (C, H, W), got {tuple(frame_shape)}")

    def _vote(self, spikes: torch.Tensor) -> torch.Tensor:
        lead = spikes.shape[:-1]
        return self.vote(spikes.reshape(-1, 1, spikes.shape[-1])).reshape(*lead, self.config.num_classes)

    def forward(
        self, x: torch.Tensor, return_sequence: bool = False
    ) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Class activations of whole clips.

        Parameters
        ----------
        x:
            Event frames [T, B, C, H, W].
        return_sequence:
            Also return the per-step activations [T, B, num_classes].

        Returns
        -------
        The time-averaged activations [B, num_classes] (each in [0, 1]: the fraction of voting neurons and
        steps that spiked), and the per-step activations if asked. The state is reset first and left at the
        end of the clip, so :meth:`step` can continue the stream.
        """
        if x.dim() != 5:
            raise ParameterError(f"AUSpikingNet.forward: input must be [T, B, C, H, W], got {tuple(x.shape)}")
        self._check_frame(x.shape[2:], "AUSpikingNet.forward")
        self.reset()
        T, B = x.shape[:2]
        y = self.bn1(self.conv1(x.flatten(0, 1)))
        y = self.plif1(y.unflatten(0, (T, B)))
        y = self.bn2(self.conv2(self.pool1(y.flatten(0, 1))))
        y = self.plif2(y.unflatten(0, (T, B)))
        y = self.pool2(y.flatten(0, 1)).reshape(T, B, -1)
        y = self.plif3(self.fc1(self.drop1(y)))
        y = self.plif4(self.fc2(self.drop2(y)))
        per_step = self._vote(y)
        self._output_sum = per_step.sum(0)
        self._steps = T
        mean = per_step.mean(0)
        return (mean, per_step) if return_sequence else mean

    #: below this fraction of active inputs, :meth:`step` computes fc1 event-driven (see :meth:`_spike_fc1`)
    SPARSE_FC_DENSITY = 0.25

    def _spike_fc1(self, s: torch.Tensor) -> torch.Tensor:
        """fc1 of one step, event-driven on CPU in eval mode: the input is binary spikes, mostly zero, so the
        product is the bias plus the sum of the weight columns of the active inputs. Reading only those
        columns (rows of a cached transposed copy) instead of the whole 8192 x 512 matrix (16 MB per step)
        makes the streaming step several times cheaper; the result equals the dense product up to float
        summation order. Dense when training, on GPU, or when the input is not sparse."""
        fc = self.fc1
        if self.training or s.device.type != "cpu" or torch.is_grad_enabled() or self.SPARSE_FC_DENSITY <= 0:
            return fc(s)
        active = s.nonzero()
        if active.shape[0] > self.SPARSE_FC_DENSITY * s.numel() or not torch.all(s[active[:, 0], active[:, 1]] == 1):
            return fc(s)
        key = (fc.weight.data_ptr(), fc.weight._version, fc.weight.dtype)
        if getattr(self, "_fc1_t_key", None) != key:
            self._fc1_t = fc.weight.detach().t().contiguous()
            self._fc1_t_key = key
        out = fc.bias.detach().expand(s.shape[0], -1).clone()
        out.index_add_(0, active[:, 0], self._fc1_t.index_select(0, active[:, 1]))
        return out

    #: CPU inference steps run as one numba kernel (:mod:`microexp.models.snn_fused`) when the model allows it
    FUSED_STEP = True

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        """Streaming mode: consume one frame per clip [B, C, H, W] and return the running average [B, num_classes]
        of the activations since the last :meth:`reset`. After T steps this equals ``forward`` over the T frames
        (eval mode; in training mode batch norm would use per-step batch statistics). On CPU in eval mode
        without autograd the whole step is one numba kernel (:mod:`microexp.models.snn_fused`, equal up to
        float summation order); ``FUSED_STEP = False`` runs it layer by layer."""
        if x_t.dim() != 4:
            raise ParameterError(f"AUSpikingNet.step: input must be [B, C, H, W], got {tuple(x_t.shape)}")
        self._check_frame(x_t.shape[1:], "AUSpikingNet.step")
        if self.FUSED_STEP and x_t.device.type == "cpu" and x_t.dtype == torch.float32:
            from microexp.models import snn_fused

            if snn_fused.supported(self):
                fused = self.__dict__.get("_fused")
                if fused is None:
                    fused = self.__dict__["_fused"] = snn_fused.FusedStep()
                out = fused(self, x_t)
                self._output_sum = out if self._output_sum is None else self._output_sum + out
                self._steps += 1
                return self._output_sum / self._steps
        pool = self.pool1 if self.training or torch.is_grad_enabled() else _max_pool_2x2
        y = pool(self.plif1.single_step(self.bn1(self.conv1(x_t))))
        y = (self.pool2 if pool is self.pool1 else pool)(self.plif2.single_step(self.bn2(self.conv2(y)))).flatten(1)
        y = self.plif3.single_step(self._spike_fc1(self.drop1.single_step(y)))
        y = self.plif4.single_step(self.fc2(self.drop2.single_step(y)))
        out = self._vote(y)
        self._output_sum = out if self._output_sum is None else self._output_sum + out
        self._steps += 1
        return self._output_sum / self._steps
