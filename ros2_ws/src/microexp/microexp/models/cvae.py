"""Conditional VAE reconstructing a grayscale face frame from an event frame (paper §4.4, Fig. 4).

x is the target intensity frame [B, 1, S, S] in [0, 1] and c the condition, an event frame of Eq. (1)
[B, 2, S, S] (S = 64 by default). Layers for S = 64::

    encoder q(z | x, c)
      cat(x, c)                            3 x 64 x 64
      enc1  Conv2d(3, 32, 4, stride 2, pad 1), ReLU    -> 32 x 32 x 32          1,568
      enc2  Conv2d(32, 64, 4, stride 2, pad 1), ReLU   -> 64 x 16 x 16 = 16384  32,832
      fc_mu, fc_logvar  Linear(16384, 32) each                                  2 x 524,320
    decoder p(x | z, c)
      cat(z, flatten(c))                   32 + 8192 = 8224
      dec_fc  Linear(8224, 16384), ReLU    -> 64 x 16 x 16                       134,758,400
      dec1  ConvTranspose2d(64, 32, 4, stride 2, pad 1), ReLU -> 32 x 32 x 32  32,800
      dec2  ConvTranspose2d(32, 1, 4, stride 2, pad 1), sigmoid -> 1 x 64 x 64 513
                                                              total  135,874,753 parameters

The paper reports 289M parameters for its model without publishing the layer sizes; the count is dominated
by the decoder's fully connected layer on the flattened condition, so this 64 x 64 version has about half
(135.9M). ``input_size`` scales it: the decoder FC has (latent + 2 S^2) * 4 S^2 weights.

Loss (:func:`cvae_loss`): the negative conditional ELBO of Eq. (7) with a Gaussian likelihood, i.e. the
squared error **summed** over the pixels of a frame plus the KL divergence to N(0, I) summed over the
latent dimensions, both averaged over the batch. Summing over pixels keeps the usual balance between the
two terms (a per-pixel mean would scale the reconstruction term down by S^2 and let the KL term dominate).

Example
-------
>>> model = ConditionalVAE(CVAEConfig())
>>> x_hat, mu, logvar = model(frames, events)       # training
>>> loss, recon, kl = cvae_loss(x_hat, frames, mu, logvar)
>>> model.sample(events)                            # inference with z = 0, the prior mean
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from microexp.errors import ParameterError


@dataclass
class CVAEConfig:
    """Hyper-parameters of :class:`ConditionalVAE`; stored in checkpoints to rebuild the model."""

    input_size: int = 64  # side S of the square frames x and c; multiple of 4
    frame_channels: int = 1  # target frame x (grayscale)
    cond_channels: int = 2  # condition c (event polarities)
    latent_dim: int = 32
    enc_channels: tuple[int, int] = (32, 64)
    dec_channels: tuple[int, int] = (64, 32)

    def __post_init__(self) -> None:
        self.enc_channels = tuple(int(c) for c in self.enc_channels)
        self.dec_channels = tuple(int(c) for c in self.dec_channels)
        if self.input_size <= 0 or self.input_size % 4:
            raise ParameterError(f"CVAEConfig.input_size must be a positive multiple of 4, got {self.input_size}")
        if len(self.enc_channels) != 2 or len(self.dec_channels) != 2:
            raise ParameterError("CVAEConfig.enc_channels and dec_channels must have 2 entries each")
        if self.latent_dim <= 0:
            raise ParameterError(f"CVAEConfig.latent_dim must be positive, got {self.latent_dim}")


class ConditionalVAE(nn.Module):
    """cVAE: ``forward(x, c) -> (x_hat, mu, logvar)``; ``sample(c) -> x_hat``. See the module docstring."""

    def __init__(self, config: Optional[CVAEConfig] = None):
        super().__init__()
        self.config = cfg = config or CVAEConfig()
        side = cfg.input_size // 4
        e1, e2 = cfg.enc_channels
        d1, d2 = cfg.dec_channels
        self._dec_shape = (d1, side, side)
        self.enc1 = nn.Conv2d(cfg.frame_channels + cfg.cond_channels, e1, 4, stride=2, padding=1)
        self.enc2 = nn.Conv2d(e1, e2, 4, stride=2, padding=1)
        self.fc_mu = nn.Linear(e2 * side * side, cfg.latent_dim)
        self.fc_logvar = nn.Linear(e2 * side * side, cfg.latent_dim)
        self.dec_fc = nn.Linear(cfg.latent_dim + cfg.cond_channels * cfg.input_size**2, d1 * side * side)
        self.dec1 = nn.ConvTranspose2d(d1, d2, 4, stride=2, padding=1)
        self.dec2 = nn.ConvTranspose2d(d2, cfg.frame_channels, 4, stride=2, padding=1)

    def _check(self, t: torch.Tensor, channels: int, what: str) -> None:
        s = self.config.input_size
        if t.dim() != 4 or tuple(t.shape[1:]) != (channels, s, s):
            raise ParameterError(f"ConditionalVAE: {what} must be [B, {channels}, {s}, {s}], got {tuple(t.shape)}")

    def encode(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance [B, latent_dim] of q(z | x, c)."""
        self._check(x, self.config.frame_channels, "x")
        self._check(c, self.config.cond_channels, "c")
        h = F.relu(self.enc2(F.relu(self.enc1(torch.cat([x, c], dim=1))))).flatten(1)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Frame [B, frame_channels, S, S] in (0, 1) for latents z [B, latent_dim] and conditions c."""
        self._check(c, self.config.cond_channels, "c")
        h = F.relu(self.dec_fc(torch.cat([z, c.flatten(1)], dim=1))).reshape(-1, *self._dec_shape)
        return torch.sigmoid(self.dec2(F.relu(self.dec1(h))))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction, mu and logvar. In training mode z = mu + sigma * eps (Eq. 5); in eval mode z = mu."""
        mu, logvar = self.encode(x, c)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu
        return self.decode(z, c), mu, logvar

    @torch.no_grad()
    def sample(
        self,
        c: torch.Tensor,
        z: Optional[torch.Tensor] = None,
        *,
        random: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Reconstruct frames from event frames c alone (inference).

        z defaults to the prior mean (zeros), the most likely frame; ``random=True`` draws z ~ N(0, I)
        (with ``generator`` if given); an explicit z [B, latent_dim] is used as is.
        """
        self._check(c, self.config.cond_channels, "c")
        shape = (c.shape[0], self.config.latent_dim)
        if z is None:
            if random:
                z = torch.randn(shape, generator=generator, device=c.device, dtype=c.dtype)
            else:
                z = torch.zeros(shape, device=c.device, dtype=c.dtype)
        elif tuple(z.shape) != shape:
            raise ParameterError(f"ConditionalVAE.sample: z must be {list(shape)}, got {tuple(z.shape)}")
        return self.decode(z, c)


def cvae_loss(
    x_hat: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative ELBO (loss, reconstruction, kl), each a scalar averaged over the batch.

    reconstruction = sum over pixels of (x_hat - x)^2; kl = -1/2 * sum over latents of (1 + logvar - mu^2 -
    exp(logvar)); loss = reconstruction + beta * kl. Per-pixel MSE is ``reconstruction / x[0].numel()``.
    """
    batch = x.shape[0]
    recon = F.mse_loss(x_hat, x, reduction="sum") / batch
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / batch
    return recon + beta * kl, recon, kl
