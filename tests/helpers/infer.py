"""Live AU inference test helpers: a random SNN that spikes, the offline reference computation, ranking checks.

The trained default model is not used by these tests: they use a **randomly initialised** SNN of the paper's
architecture (saved as a real checkpoint by the ``random_checkpoint`` fixture of conftest.py). Its batch-norm and
fully connected weights are scaled so that every layer spikes on the tests' event frames: with untouched random
weights the last layer stays silent and every window would give the uniform distribution, which would make the
equality tests vacuous.
"""

from __future__ import annotations

import numpy as np
import torch

from microexp.events.frames import event_frames
from microexp.infer.pipeline import offline_probabilities
from microexp.models import AUSpikingNet, SNNConfig
from microexp.vision.crop import crop_resize

ROI = (40.0, 20.0, 300.0, 240.0)  # a face-sized box inside the DAVIS346 array


def random_snn(seed: int = 0, **config) -> AUSpikingNet:
    """A randomly initialised SNN (no trained model exists yet), scaled so that all four PLIF layers spike."""
    torch.manual_seed(seed)
    model = AUSpikingNet(SNNConfig(**config)).eval()
    with torch.no_grad():
        model.bn1.weight.fill_(4.0)
        model.bn2.weight.fill_(4.0)
        model.fc1.weight.mul_(32.0)
        model.fc2.weight.mul_(8.0)
    return model


def offline(model, events, width, height, box, t_start=None, temperature=1.0):
    """The offline computation: Eq. (1) frames of the whole recording, the same crop, multi-step inference."""
    frames = event_frames(events, width, height, t_start=t_start)
    crops = np.stack([crop_resize(f, box) for f in frames])
    return frames, offline_probabilities(model, crops, temperature)


def assert_same_ranking(top3s, expected, atol=1e-5):
    """Each top-3 names three classes whose expected probabilities are the three largest (ties, common with
    spike-count activations, may be broken either way by rounding in the last bit)."""
    for top3, p in zip(top3s, expected):
        np.testing.assert_allclose(p[list(top3)], np.sort(p)[::-1][:3], rtol=0, atol=atol)
        assert len(set(top3)) == 3
