"""Parametric Leaky Integrate-and-Fire neuron (PLIF, Fang et al. 2021) in plain torch.

Dynamics, per neuron and time step (the ``decay_input=True`` form of spikingjelly 2.0.0's
``ParametricLIFNode``, which is its default)::

    q    = 1 / tau = sigmoid(w)                 w: one learnable scalar per layer, tau=2 -> w=0
    H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) * q      charge
    S[t] = Heaviside(H[t] - V_threshold)                 fire (H >= V_threshold spikes)
    V[t] = V_reset if S[t] else H[t]                     hard reset

Backward uses the arctan surrogate (spikingjelly ``surrogate.ATan``)::

    dS/dH = (alpha / 2) / (1 + (pi / 2 * alpha * (H - V_threshold))**2)

and, as in spikingjelly's default ``detach_reset=False``, the gradient also flows through the spike
in the reset ``V = S * V_reset + (1 - S) * H``, i.e. dV/dH = (1 - S) + (V_reset - H) * dS/dH.

The multi-step loop is a custom autograd function: the forward loop records no graph and the backward
is a hand-written loop over time (the same recurrence as spikingjelly's CPU kernel), both working on
one time step at a time. It gives the same spikes and membrane bit for bit as spikingjelly's
``ParametricLIFNode`` (float32 and float64), and gradients equal within float rounding (checked in
tests/test_models.py). On GPU each step is a few small kernels; ``backend="spikingjelly"`` runs
spikingjelly's fused kernels instead, with the same parameters and results.

Example
-------
>>> node = PLIFNode()
>>> spikes = node(torch.randn(8, 4, 16))        # multi-step [T, B, ...]
>>> node.reset()
>>> s0 = node.single_step(torch.randn(4, 16))   # streaming; node.v keeps the membrane
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import torch
from torch import nn

from microexp.errors import ParameterError

BACKENDS = ("torch", "spikingjelly")


class _PLIFMultiStep(torch.autograd.Function):
    """(x_seq [T, ...], v0 [...], w []) -> (spikes [T, ...], v_last [...]); hard reset, decay_input=True.

    Both loops work one time step at a time on small buffers rather than on whole [T, ...] temporaries:
    for conv feature maps a [T, B, C, H, W] temporary is hundreds of MB and each one costs more in page
    faults and memory traffic than the per-step Python overhead.
    """

    @staticmethod
    def forward(ctx, x_seq, v0, w, v_threshold: float, v_reset: float, alpha: float, detach_reset: bool):
        q = torch.sigmoid(w.detach().float())
        x = x_seq if x_seq.dtype == torch.float64 else x_seq.float()
        v = v0.detach().to(torch.promote_types(v0.dtype, x.dtype))
        h_seq = torch.empty_like(x, memory_format=torch.contiguous_format)
        spikes = torch.empty_like(x_seq, memory_format=torch.contiguous_format)
        for t in range(x.shape[0]):
            # Same operations in the same order as spikingjelly, so spikes and V are bit-identical.
            h = h_seq[t]
            torch.sub(v, v_reset, out=h)
            torch.sub(x[t], h, out=h)
            h.mul_(q).add_(v)
            fired = h >= v_threshold
            spikes[t].copy_(fired)
            v = torch.where(fired, v_reset, h)
        ctx.save_for_backward(x, v0, w, h_seq)
        ctx.params = (v_threshold, v_reset, alpha, detach_reset)
        ctx.x_dtype = x_seq.dtype
        return spikes, v

    @staticmethod
    def backward(ctx, grad_spikes, grad_v_last):
        x, v0, w, h_seq = ctx.saved_tensors
        v_threshold, v_reset, alpha, detach_reset = ctx.params
        q = torch.sigmoid(w.float())
        need_x, need_v0, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        grad_x = torch.empty_like(h_seq, dtype=ctx.x_dtype) if need_x else None
        grad_q = torch.zeros_like(h_seq[0]) if need_w else None
        # carry = dL/dV[t]: the incoming gradient of the final V, then gh[t+1] * (1 - q) going back in time.
        carry = grad_v_last.to(h_seq.dtype)
        for t in range(h_seq.shape[0] - 1, -1, -1):
            h = h_seq[t]
            fired = h >= v_threshold
            sg = h - v_threshold  # atan surrogate: (alpha/2) / (1 + (pi/2 * alpha * (H - thr))^2)
            sg.mul_(math.pi / 2 * alpha)
            sg.mul_(sg).add_(1).reciprocal_().mul_(alpha / 2)
            # dV[t]/dH[t] through the hard reset V = S * V_reset + (1 - S) * H.
            reset_grad = (~fired).to(h.dtype)
            if not detach_reset:
                reset_grad.addcmul_(v_reset - h, sg)
            gh = grad_spikes[t].to(h.dtype) * sg  # dL/dH[t]
            gh.addcmul_(carry, reset_grad)
            if need_x:
                torch.mul(gh, q, out=grad_x[t]) if grad_x.dtype == gh.dtype else grad_x[t].copy_(gh * q)
            if need_w:
                # dH[t]/dq = X[t] - (V[t-1] - V_reset)
                if t > 0:
                    prev = h_seq[t - 1]
                    v_prev = torch.where(prev >= v_threshold, v_reset, prev)
                else:
                    v_prev = v0.to(h.dtype)
                dq = torch.sub(v_prev, v_reset)
                torch.sub(x[t], dq, out=dq)
                grad_q.addcmul_(gh, dq)
            carry = gh.mul_(1 - q)
        grad_w = (grad_q.sum() * q * (1 - q)).to(w.dtype) if need_w else None
        grad_v0 = carry.to(v0.dtype) if need_v0 else None
        return grad_x, grad_v0, grad_w, None, None, None, None


def _plif_inference(x_seq, v0, w, v_threshold: float, v_reset: float):
    """The forward of :class:`_PLIFMultiStep` without what backward needs (no membrane history is kept)."""
    q = torch.sigmoid(w.float())
    x = x_seq if x_seq.dtype == torch.float64 else x_seq.float()
    v = v0.to(torch.promote_types(v0.dtype, x.dtype))
    spikes = torch.empty_like(x_seq, memory_format=torch.contiguous_format)
    for t in range(x.shape[0]):
        h = torch.sub(v, v_reset)
        torch.sub(x[t], h, out=h)
        h.mul_(q).add_(v)
        fired = h >= v_threshold
        spikes[t].copy_(fired)
        v = h.masked_fill_(fired, v_reset)
    return spikes, v


@functools.lru_cache(maxsize=None)
def _fused_step_kernel():
    """One PLIF step over flat float32 arrays in one pass (numba), in place on the membrane: the same float32
    operations in the same order as :func:`_plif_inference` (no fused multiply-add), so the same bits."""
    from numba import njit

    @njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
    def step(x, v, q, v_threshold, v_reset, spikes):  # pragma: no cover
        for i in range(x.shape[0]):
            h = x[i] - (v[i] - v_reset)
            h = h * q
            h = h + v[i]
            if h >= v_threshold:
                spikes[i] = 1.0
                v[i] = v_reset
            else:
                spikes[i] = 0.0
                v[i] = h

    return step


def detach_state(state: dict, names: tuple[str, ...]) -> dict:
    """``state`` (a module's ``__dict__`` copy) with the tensors under ``names`` detached from the graph."""
    for name in names:
        if isinstance(state.get(name), torch.Tensor):
            state[name] = state[name].detach()
    return state


@functools.lru_cache(maxsize=None)
def _spikingjelly_plif(alpha: float):
    """spikingjelly's functional ``plif_multi_step`` and an ATan(alpha) surrogate, imported on first use."""
    try:
        from spikingjelly.activation_based import functional, surrogate
    except ImportError as exc:  # spikingjelly 2.0.0 imports loguru at package import time
        raise ParameterError(
            f"PLIF backend 'spikingjelly' needs spikingjelly 2.0.0 and its dependencies ({exc}); "
            "install them or use backend 'torch'"
        ) from exc
    return functional.plif_multi_step, surrogate.ATan(alpha=alpha)


class PLIFNode(nn.Module):
    """A layer of PLIF neurons sharing one learnable time constant.

    Parameters
    ----------
    init_tau:
        Initial membrane time constant tau (> 1); ``w`` starts at ``-log(tau - 1)`` (tau=2 -> w=0).
    v_threshold:
        Firing threshold; a neuron spikes when its charged membrane H reaches it (H >= v_threshold).
    v_reset:
        Hard-reset potential after a spike.
    surrogate_alpha:
        ``alpha`` of the arctan surrogate gradient.
    detach_reset:
        Exclude the reset from the backward graph (spikingjelly's ``detach_reset``; default False as there).
    backend:
        ``"torch"`` (this module's loop) or ``"spikingjelly"`` (spikingjelly's functional ``plif_multi_step``,
        with its fused CUDA/Triton kernels on GPU). Both share the parameter ``w``, so state dicts are
        interchangeable.
    store_v_seq:
        Keep the membrane after every step of the last multi-step call in ``v_seq`` (for tests and monitoring).

    State
    -----
    ``v`` is the membrane after the last call, ``None`` after :meth:`reset` (the next call then starts
    from V = V_reset). Both modes continue from ``v``: streaming T single steps equals one multi-step
    call over the same T inputs. Call :meth:`reset` between independent sequences.
    """

    def __init__(
        self,
        init_tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float = 0.0,
        surrogate_alpha: float = 2.0,
        detach_reset: bool = False,
        backend: str = "torch",
        store_v_seq: bool = False,
    ):
        super().__init__()
        if not init_tau > 1.0:
            raise ParameterError(f"PLIF init_tau must be > 1, got {init_tau}")
        if backend not in BACKENDS:
            raise ParameterError(f"PLIF backend must be one of {BACKENDS}, got {backend!r}")
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))
        self.v_threshold = float(v_threshold)
        self.v_reset = float(v_reset)
        self.surrogate_alpha = float(surrogate_alpha)
        self.detach_reset = bool(detach_reset)
        self.backend = backend
        self.store_v_seq = store_v_seq
        self.v: Optional[torch.Tensor] = None
        self.v_seq: Optional[torch.Tensor] = None
        if backend == "spikingjelly":
            _spikingjelly_plif(self.surrogate_alpha)  # fail here, not at the first forward

    @property
    def tau(self) -> float:
        """Current membrane time constant 1 / sigmoid(w)."""
        return float(1.0 / torch.sigmoid(self.w.detach()))

    def extra_repr(self) -> str:
        return (
            f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, alpha={self.surrogate_alpha}, "
            f"detach_reset={self.detach_reset}, backend={self.backend!r}, tau={self.tau:.4g}"
        )

    def reset(self) -> None:
        """Forget the membrane: the next call starts from V = V_reset."""
        self.v = None
        self.v_seq = None

    def __getstate__(self):
        # The membrane may still hang on the autograd graph; copies and pickles keep only its value.
        return detach_state(super().__getstate__(), ("v", "v_seq"))

    def _initial_v(self, like: torch.Tensor) -> torch.Tensor:
        if self.v is not None:
            if self.v.shape != like.shape or self.v.device != like.device:
                raise ParameterError(
                    f"PLIF state has shape {tuple(self.v.shape)} on {self.v.device} but the input step has "
                    f"{tuple(like.shape)} on {like.device}; call reset() between sequences"
                )
            return self.v
        dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
        return torch.full(like.shape, self.v_reset, dtype=dtype, device=like.device)

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Spikes [T, ...] for inputs [T, ...], continuing from (and updating) the membrane ``v``."""
        if x_seq.dim() < 2:
            raise ParameterError(f"PLIF multi-step input must be [T, ...], got shape {tuple(x_seq.shape)}")
        v0 = self._initial_v(x_seq[0])
        if self.backend == "spikingjelly":
            plif_multi_step, surrogate = _spikingjelly_plif(self.surrogate_alpha)
            spikes, v, _ = plif_multi_step(
                x_seq, v0, self.w, True, self.v_threshold, self.v_reset, surrogate, self.detach_reset
            )
        elif torch.is_grad_enabled() and (x_seq.requires_grad or v0.requires_grad or self.w.requires_grad):
            spikes, v = _PLIFMultiStep.apply(
                x_seq, v0, self.w, self.v_threshold, self.v_reset, self.surrogate_alpha, self.detach_reset
            )
        else:
            spikes, v = _plif_inference(x_seq, v0, self.w.detach(), self.v_threshold, self.v_reset)
        if self.store_v_seq:
            self.v_seq = self._membrane_sequence(x_seq, v0)
        self.v = v
        return spikes

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes for one step of input [...]; ``v`` carries over to the next call (and the graph with it).

        Inference on CPU in float32 (the live node's case) takes a fused one-pass kernel that updates the
        membrane in place; it computes the same bits as the multi-step loop."""
        if (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.backend == "torch"
            and not self.store_v_seq
            and not torch.is_grad_enabled()
        ):
            v = self._initial_v(x)
            if v.dtype == torch.float32:
                if self.v is None or not v.is_contiguous():
                    v = v.contiguous() if self.v is not None else v
                q = torch.sigmoid(self.w.detach().float())
                spikes = torch.empty(x.shape, dtype=torch.float32)
                xf = x.contiguous()
                import numpy as np

                _fused_step_kernel()(
                    xf.numpy().reshape(-1),
                    v.numpy().reshape(-1),
                    np.float32(q.item()),
                    np.float32(self.v_threshold),
                    np.float32(self.v_reset),
                    spikes.numpy().reshape(-1),
                )
                self.v = v
                return spikes
        return self.multi_step(x.unsqueeze(0))[0]

    forward = multi_step

    @torch.no_grad()
    def _membrane_sequence(self, x_seq: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
        q = torch.sigmoid(self.w.float())
        v, out = v0, []
        for x in x_seq.float() if x_seq.dtype != torch.float64 else x_seq:
            h = v + (x - (v - self.v_reset)) * q
            v = torch.where(h >= self.v_threshold, self.v_reset, h)
            out.append(v)
        return torch.stack(out)
