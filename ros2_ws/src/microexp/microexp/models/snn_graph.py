"""The streaming SNN step for GPUs: a functional step over static buffers, replayed as a CUDA graph.

On a GPU one streaming step of :class:`~microexp.models.snn.AUSpikingNet` is about twenty small kernels; run
eagerly, the step costs their launch overhead, far more than their work. A CUDA graph records the launches
once and replays them with one call (``microexp bench gpu`` compares both). Capturing needs a step without
Python-side state: :func:`functional_step` takes the four PLIF membranes as arguments and returns the new
ones, with the float operations of :func:`microexp.models.plif._plif_inference` in the same order, so it
computes what ``model.step`` does (tested on CPU against it). :class:`CudaGraphStep` keeps static input,
membrane and running-sum buffers, captures one step that updates them in place, and offers the model's
streaming interface (``step``, ``reset``, ``steps``) so the live pipeline can use it in place of the model.
"""

from __future__ import annotations

from typing import Optional

import torch

from microexp.errors import ParameterError


def _plif(x: torch.Tensor, v: torch.Tensor, q: torch.Tensor, thr: float, v_reset: float):
    h = torch.sub(v, v_reset)
    h = torch.sub(x, h)
    h = h * q
    h = h + v
    fired = h >= thr
    return fired.to(x.dtype), h.masked_fill(fired, v_reset)


def initial_state(model, batch: int = 1, device=None, dtype=torch.float32) -> list[torch.Tensor]:
    """The four PLIF membranes at rest (V = V_reset) for ``batch`` clips."""
    cfg = model.config
    s = cfg.input_size
    shapes = (
        (batch, cfg.channels, s, s),
        (batch, cfg.channels, s // 2, s // 2),
        (batch, cfg.fc_hidden),
        (batch, cfg.fc_out),
    )
    plifs = (model.plif1, model.plif2, model.plif3, model.plif4)
    return [torch.full(sh, p.v_reset, device=device, dtype=dtype) for sh, p in zip(shapes, plifs)]


def functional_step(model, x_t: torch.Tensor, state: list[torch.Tensor]):
    """One eval-mode step of ``model`` for frames ``x_t`` [B, C, H, W] from membranes ``state``; returns the
    class activations of this step [B, num_classes] and the new membranes. Nothing in ``model`` changes."""
    if model.training:
        raise ParameterError("functional_step is for inference: call model.eval() first")
    plifs = (model.plif1, model.plif2, model.plif3, model.plif4)
    q = [torch.sigmoid(p.w.detach().to(x_t.dtype)) for p in plifs]
    s1, v1 = _plif(model.bn1(model.conv1(x_t)), state[0], q[0], plifs[0].v_threshold, plifs[0].v_reset)
    y = model.pool1(s1)
    s2, v2 = _plif(model.bn2(model.conv2(y)), state[1], q[1], plifs[1].v_threshold, plifs[1].v_reset)
    y = model.pool2(s2).flatten(1)
    s3, v3 = _plif(model.fc1(y), state[2], q[2], plifs[2].v_threshold, plifs[2].v_reset)
    s4, v4 = _plif(model.fc2(s3), state[3], q[3], plifs[3].v_threshold, plifs[3].v_reset)
    return model._vote(s4), [v1, v2, v3, v4]


class CudaGraphStep:
    """``model``'s streaming step captured as a CUDA graph for ``batch`` clips.

    ``step(x_t)`` copies the frames into the static input, replays the graph (which advances the membranes
    and the running sum in place) and returns the running average [B, num_classes], like
    :meth:`AUSpikingNet.step`; ``reset()`` puts the membranes back at rest. ``warmup`` eager steps on a side
    stream precede the capture, as CUDA graphs require.
    """

    def __init__(self, model, batch: int = 1, device: str = "cuda", warmup: int = 3):
        if not torch.cuda.is_available():
            raise ParameterError("CudaGraphStep needs a CUDA device (torch.cuda.is_available() is False)")
        self.model = model.to(device).eval()
        self.config = model.config
        cfg = model.config
        self.device = torch.device(device)
        self.x = torch.zeros(batch, cfg.in_channels, cfg.input_size, cfg.input_size, device=self.device)
        self.state = initial_state(model, batch, self.device)
        self.sum = torch.zeros(batch, cfg.num_classes, device=self.device)
        self._steps = 0
        self.graph = torch.cuda.CUDAGraph()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(warmup):
                self._body()
        torch.cuda.current_stream().wait_stream(side)
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self._body()
        self.reset()

    def _body(self) -> None:
        out, new = functional_step(self.model, self.x, self.state)
        for v, n in zip(self.state, new):
            v.copy_(n)
        self.sum.add_(out)

    @property
    def steps(self) -> int:
        return self._steps

    def reset(self) -> None:
        plifs = (self.model.plif1, self.model.plif2, self.model.plif3, self.model.plif4)
        for v, p in zip(self.state, plifs):
            v.fill_(p.v_reset)
        self.sum.zero_()
        self._steps = 0

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        if tuple(x_t.shape) != tuple(self.x.shape):
            raise ParameterError(f"CudaGraphStep: frames must be {tuple(self.x.shape)}, got {tuple(x_t.shape)}")
        self.x.copy_(x_t, non_blocking=True)
        self.graph.replay()
        self._steps += 1
        return self.sum / self._steps

    def to(self, device) -> "CudaGraphStep":
        if torch.device(device) != self.device:
            raise ParameterError(f"CudaGraphStep lives on {self.device}; it cannot move to {device}")
        return self

    def eval(self) -> "CudaGraphStep":
        return self


def graphed(model, device: str, batch: int = 1) -> Optional[CudaGraphStep]:
    """A :class:`CudaGraphStep` of ``model`` when ``device`` is CUDA, else None."""
    if not str(device).startswith("cuda"):
        return None
    return CudaGraphStep(model, batch=batch, device=device)
