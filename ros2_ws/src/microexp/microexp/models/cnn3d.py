"""3D-CNN baseline for Action Unit recognition (paper §5, Table 5): C3D (Tran et al. 2015) adapted to
64 x 64 frames and clips of any length.

The paper gives only "based on C3D, adapted for variable clip length" and 13.06M parameters. This version
keeps C3D's layout — eight 3x3x3 convolutions in five stages, max pooling (1,2,2) after the first stage
and (2,2,2) after the others, then fc6, fc7 and the classifier — with half of C3D's widths and fc layers of
2048, which gives 13,255,061 parameters for event input (C=2) and 13,255,925 for RGB (C=3): 13.26M,
1.5% above the paper's 13.06M (whose exact layers are not published).
Changes for variable length: temporal pooling uses ``ceil_mode`` so that a clip of any T >= 1 survives the
four halvings, and an adaptive average pool to (1, 2, 2) before fc6 removes the dependence on T (and on the
frame size). Batch norm after each convolution (C3D had none) makes training from scratch on a small data
set workable.

Layers (C input channels, T frames, 64 x 64)::

    conv1a  C   -> 32,  BN, ReLU, MaxPool (1,2,2)       T     x 32 x 32
    conv2a  32  -> 64,  BN, ReLU, MaxPool (2,2,2)       T/2   x 16 x 16
    conv3a  64  -> 128, conv3b 128 -> 128, MaxPool      T/4   x  8 x  8
    conv4a  128 -> 256, conv4b 256 -> 256, MaxPool      T/8   x  4 x  4
    conv5a  256 -> 256, conv5b 256 -> 256, MaxPool      T/16  x  2 x  2
    AdaptiveAvgPool3d (1, 2, 2) -> 1024
    fc6 1024 -> 2048, ReLU, Dropout; fc7 2048 -> 2048, ReLU, Dropout; fc8 2048 -> num_classes (logits)

Example
-------
>>> model = C3DNet(CNN3DConfig(in_channels=2))
>>> logits = model(torch.zeros(4, 2, 30, 64, 64))   # [B, C, T, H, W] -> [4, 21]
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from microexp.errors import ParameterError


@dataclass
class CNN3DConfig:
    """Hyper-parameters of :class:`C3DNet`; stored in checkpoints to rebuild the model.

    ``input_size`` is the frame side the model is trained on: the network itself accepts any size (adaptive
    pooling), but the pipeline must feed frames prepared like those of training.
    """

    in_channels: int = 2  # 2 event polarities, or 3 for RGB
    input_size: int = 64
    num_classes: int = 21
    widths: tuple[int, ...] = (32, 64, 128, 128, 256, 256, 256, 256)  # conv1a, 2a, 3a, 3b, 4a, 4b, 5a, 5b
    fc_hidden: int = 2048
    dropout: float = 0.2

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        if len(self.widths) != 8 or min(self.widths) <= 0:
            raise ParameterError(f"CNN3DConfig.widths must be 8 positive ints (C3D's 8 convs), got {self.widths}")
        if not 0.0 <= self.dropout < 1.0:
            raise ParameterError(f"CNN3DConfig.dropout must be in [0, 1), got {self.dropout}")


# Pooling after conv1a, conv2a, conv3b, conv4b and conv5b (indices into the 8 convolutions).
_POOL_AFTER = {0: (1, 2, 2), 1: (2, 2, 2), 3: (2, 2, 2), 5: (2, 2, 2), 7: (2, 2, 2)}
_NAMES = ("conv1a", "conv2a", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")


class C3DNet(nn.Module):
    """C3D-style 3D CNN: clips [B, C, T, H, W] -> class logits [B, num_classes]."""

    def __init__(self, config: CNN3DConfig | None = None):
        super().__init__()
        self.config = config = config or CNN3DConfig()
        layers: list[tuple[str, nn.Module]] = []
        in_ch = config.in_channels
        for i, (name, width) in enumerate(zip(_NAMES, config.widths)):
            layers += [
                (name, nn.Conv3d(in_ch, width, 3, padding=1, bias=False)),
                (f"bn{name[4:]}", nn.BatchNorm3d(width)),
                (f"relu{name[4:]}", nn.ReLU(inplace=True)),
            ]
            if i in _POOL_AFTER:
                k = _POOL_AFTER[i]
                layers.append((f"pool{name[4]}", nn.MaxPool3d(k, k, ceil_mode=True)))
            in_ch = width
        self.features = nn.Sequential(OrderedDict(layers))
        self.pool = nn.AdaptiveAvgPool3d((1, 2, 2))
        self.classifier = nn.Sequential(
            OrderedDict(
                fc6=nn.Linear(in_ch * 4, config.fc_hidden),
                relu6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(config.dropout),
                fc7=nn.Linear(config.fc_hidden, config.fc_hidden),
                relu7=nn.ReLU(inplace=True),
                drop7=nn.Dropout(config.dropout),
                fc8=nn.Linear(config.fc_hidden, config.num_classes),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, num_classes] for clips [B, C, T, H, W] of any T >= 1 (and H, W >= 1)."""
        if x.dim() != 5 or x.shape[1] != self.config.in_channels:
            raise ParameterError(f"C3DNet: input must be [B, {self.config.in_channels}, T, H, W], got {tuple(x.shape)}")
        return self.classifier(self.pool(self.features(x)).flatten(1))
