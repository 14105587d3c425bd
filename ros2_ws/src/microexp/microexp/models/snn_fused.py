"""The whole streaming step of :class:`~microexp.models.snn.AUSpikingNet` as one numba kernel (CPU, eval).

The live node runs one step per 33 ms window on a CPU that it shares with the event intake and DDS. Run
layer by layer, the step is fifteen small torch calls of 50-300 µs each, and every call re-takes the GIL
and competes for the cores. Here the step is a single call that releases the GIL and whose work follows
the spikes (paper §4.3 layers, eval mode):

- conv1 over the event frame, visiting only its non-zero pixels (event frames are mostly empty);
- batch norm folded into a per-channel scale and shift (``a = γ / sqrt(σ² + ε)``, ``c = β − μ·a``), then
  the PLIF update in the same float32 operations as :func:`microexp.models.plif._plif_inference`, then
  the 2 × 2 max-pool as "some spike in the 2 × 2 cell";
- conv2, fc1 and fc2 event-driven: their inputs are binary spikes, so each active input adds its weight
  column;
- dropout is the identity in eval mode; the vote averages each class's group of output spikes.

The membranes are the PLIF modules' own ``v`` tensors, updated in place, so ``reset()``, ``forward`` and
the unfused :meth:`~microexp.models.snn.AUSpikingNet.step` continue from the same state. The result equals
the layer-by-layer step up to float summation order and the folded batch norm (tested within 1e-5); a
membrane that lands within rounding of the threshold can in principle spike in one and not the other.
"""

from __future__ import annotations

import functools

import numpy as np
import torch


@functools.lru_cache(maxsize=None)
def _kernel():  # noqa: C901 - builds the numba kernels below (numba imported on first use); their loops count here
    from numba import njit

    jit = njit(cache=True, nogil=True, boundscheck=False, fastmath=False, inline="always")

    @jit
    def scatter3x3(acc, y, x, w, ci, val):  # pragma: no cover - acc [H,W,C] += val * kernel of input (ci, y, x)
        H, W, C = acc.shape
        for ky in range(3):
            oy = y + 1 - ky
            if 0 <= oy < H:
                for kx in range(3):
                    ox = x + 1 - kx
                    if 0 <= ox < W:
                        for o in range(C):
                            acc[oy, ox, o] += val * w[ci, ky, kx, o]

    @jit
    def plif(inp, vv, q, thr, v_reset):  # pragma: no cover - the float32 ops of _plif_inference, in order
        h = inp - (vv - v_reset)
        h = h * q
        h = h + vv
        fired = h >= thr  # branch-free, so that loops over channels vectorise
        return (v_reset if fired else h), fired

    @jit
    def conv_bn_plif(acc, a, c, q, v, thr, v_reset):  # pragma: no cover - v [H,W,C] in place; spikes -> acc
        H, W, C = acc.shape
        for y in range(H):
            for x in range(W):
                for o in range(C):
                    v[y, x, o], fired = plif(acc[y, x, o] * a[o] + c[o], v[y, x, o], q, thr, v_reset)
                    acc[y, x, o] = fired

    @njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
    def step(  # noqa: C901, PLR0912 - numba kernel: one pass over the layers per sample; calls out of it cost per spike
        x,
        w1,
        a1,
        c1,
        q1,
        v1,
        w2,
        a2,
        c2,
        q2,
        v2,
        fc1t,
        b1,
        q3,
        v3,
        fc2t,
        b2,
        q4,
        v4,
        thr,
        v_reset,
        group,
        out,
        acc1,
        acc2,
    ):  # pragma: no cover - compiled
        # x [B,Ci,H,W]; w1 [Ci,3,3,C]; channels last: v1 [B,H,W,C], v2 [B,H/2,W/2,C]; w2 [C,3,3,C];
        # fc1t [C*H/4*W/4, F1] (torch's flatten order: channel, row, column); v3 [B,F1]; fc2t [F1,F2];
        # v4 [B,F2]; out [B,F2/group]; scratch acc1 [H,W,C], acc2 [H/2,W/2,C]
        B, Ci, H, W = x.shape
        C = w1.shape[3]
        H2, W2, H4, W4 = H // 2, W // 2, H // 4, W // 4
        F1, F2 = fc1t.shape[1], fc2t.shape[1]
        for b in range(B):
            # conv1: every non-zero input pixel adds its weighted kernel to the outputs it reaches
            acc1[:] = 0.0
            for ci in range(Ci):
                for y in range(H):
                    for xx in range(W):
                        if x[b, ci, y, xx] != 0.0:
                            scatter3x3(acc1, y, xx, w1, ci, x[b, ci, y, xx])
            conv_bn_plif(acc1, a1, c1, q1, v1[b], thr, v_reset)  # acc1 now holds plif1's spikes
            # pool1 (a spike anywhere in the 2 x 2 cell) and conv2 over the pooled spikes
            acc2[:] = 0.0
            for y in range(H2):
                for xx in range(W2):
                    for ci in range(C):
                        if (
                            acc1[2 * y, 2 * xx, ci]
                            + acc1[2 * y, 2 * xx + 1, ci]
                            + acc1[2 * y + 1, 2 * xx, ci]
                            + acc1[2 * y + 1, 2 * xx + 1, ci]
                        ) > 0.0:
                            scatter3x3(acc2, y, xx, w2, ci, np.float32(1.0))
            conv_bn_plif(acc2, a2, c2, q2, v2[b], thr, v_reset)
            # pool2 + fc1: the weight rows of the active pooled spikes
            acc3 = b1.copy()
            for o in range(C):
                for y in range(H4):
                    for xx in range(W4):
                        if (
                            acc2[2 * y, 2 * xx, o]
                            + acc2[2 * y, 2 * xx + 1, o]
                            + acc2[2 * y + 1, 2 * xx, o]
                            + acc2[2 * y + 1, 2 * xx + 1, o]
                        ) > 0.0:
                            row = (o * H4 + y) * W4 + xx
                            for j in range(F1):
                                acc3[j] += fc1t[row, j]
            # plif3, and fc2 summed over its spikes in the same pass
            acc4 = b2.copy()
            for j in range(F1):
                v3[b, j], fired = plif(acc3[j], v3[b, j], q3, thr, v_reset)
                if fired:
                    for k in range(F2):
                        acc4[k] += fc2t[j, k]
            # plif4 + vote: each class's share of spiking output neurons
            out[b, :] = 0.0
            for k in range(F2):
                v4[b, k], fired = plif(acc4[k], v4[b, k], q4, thr, v_reset)
                out[b, k // group] += fired
            for k in range(out.shape[1]):
                out[b, k] = out[b, k] / group
        return True

    return step


def _bn_fold(bn: torch.nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    scale = bn.weight.detach().float() / torch.sqrt(bn.running_var.float() + bn.eps)
    shift = bn.bias.detach().float() - bn.running_mean.float() * scale
    return scale.contiguous().numpy(), shift.contiguous().numpy()


def supported(model) -> bool:
    """Whether ``model`` (an AUSpikingNet) in its current state can take the fused step."""
    plifs = (model.plif1, model.plif2, model.plif3, model.plif4)
    convs = (model.conv1, model.conv2)
    return (
        not model.training
        and not torch.is_grad_enabled()
        and all(p.backend == "torch" and not p.store_v_seq for p in plifs)
        and len({(p.v_threshold, p.v_reset) for p in plifs}) == 1
        and all(
            c.kernel_size == (3, 3)
            and c.stride == (1, 1)
            and c.padding == (1, 1)
            and c.bias is None
            and c.groups == 1
            and c.dilation == (1, 1)
            for c in convs
        )
        and all(bn.track_running_stats and bn.affine for bn in (model.bn1, model.bn2))
        and all(t.dtype == torch.float32 and t.device.type == "cpu" for t in model.parameters())
    )


class FusedStep:
    """Prepared weights of one model for :func:`_kernel`; rebuilt when a parameter or buffer changes."""

    def __init__(self):
        self._key = None
        self._args = None
        self._scratch = {}

    def _version(self, model) -> tuple:
        if getattr(self, "_tensors_of", None) is not model:
            self._tensors = list(model.parameters()) + list(model.buffers())
            self._tensors_of = model
        return tuple((t.data_ptr(), t._version) for t in self._tensors)

    def _prepare(self, model) -> tuple:
        key = self._version(model)
        if key != self._key:
            with torch.no_grad():
                w1 = model.conv1.weight.detach().permute(1, 2, 3, 0).contiguous().numpy()
                w2 = model.conv2.weight.detach().permute(1, 2, 3, 0).contiguous().numpy()
                a1, c1 = _bn_fold(model.bn1)
                a2, c2 = _bn_fold(model.bn2)
                fc1t = model.fc1.weight.detach().t().contiguous().numpy()
                fc2t = model.fc2.weight.detach().t().contiguous().numpy()
                b1 = model.fc1.bias.detach().contiguous().numpy()
                b2 = model.fc2.bias.detach().contiguous().numpy()
                q = [
                    np.float32(torch.sigmoid(p.w.detach().float()).item())
                    for p in (model.plif1, model.plif2, model.plif3, model.plif4)
                ]
            self._args = (w1, a1, c1, q[0], w2, a2, c2, q[1], fc1t, b1, q[2], fc2t, b2, q[3])
            self._key = key
        return self._args

    def __call__(self, model, x_t: torch.Tensor) -> torch.Tensor:
        """Class activations [B, num_classes] of this step (not averaged over time); updates the membranes."""
        w1, a1, c1, q1, w2, a2, c2, q2, fc1t, b1, q3, fc2t, b2, q4 = self._prepare(model)
        B, _, H, W = x_t.shape
        C = w1.shape[3]
        shapes = ((B, C, H, W), (B, C, H // 2, W // 2), (B, fc1t.shape[1]), (B, fc2t.shape[1]))
        states = []
        for i, (plif, shape) in enumerate(zip((model.plif1, model.plif2, model.plif3, model.plif4), shapes)):
            v = plif._initial_v(torch.empty(shape))
            if i < 2:  # the convolution membranes stay channels-last: the kernel's inner loops run over channels
                if v.dtype != torch.float32 or not v.is_contiguous(memory_format=torch.channels_last):
                    v = v.float().contiguous(memory_format=torch.channels_last)
                plif.v = v
                states.append(v.permute(0, 2, 3, 1).numpy())
            else:
                if v.dtype != torch.float32 or not v.is_contiguous():
                    v = v.float().contiguous()
                plif.v = v
                states.append(v.numpy())
        classes = model.config.num_classes
        out = np.empty((B, classes), np.float32)
        x = x_t.detach().float().contiguous().numpy()
        scratch = self._scratch.get((C, H, W))
        if scratch is None:
            scratch = self._scratch[(C, H, W)] = (
                np.zeros((H, W, C), np.float32),
                np.zeros((H // 2, W // 2, C), np.float32),
            )
        _kernel()(
            x,
            w1,
            a1,
            c1,
            q1,
            states[0],
            w2,
            a2,
            c2,
            q2,
            states[1],
            fc1t,
            b1,
            q3,
            states[2],
            fc2t,
            b2,
            q4,
            states[3],
            np.float32(model.plif1.v_threshold),
            np.float32(model.plif1.v_reset),
            fc2t.shape[1] // classes,
            out,
            *scratch,
        )
        return torch.from_numpy(out)
