"""Mapping networks F_E (z_E → code) and F_D (code → z_G), losses, diagnostics and optimiser."""

from __future__ import annotations

import torch
from torch import nn

from squeeze3d.config import MappingConfig
from squeeze3d.mapping.common import MappingHalf, numel
from squeeze3d.mapping.setloss import quantisation_noise


def code_shape(cfg: MappingConfig, z_e_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of one compressed code (without batch)."""
    if cfg.arch == "unet3d":
        f = 2 ** len(cfg.unet_channels)
        return (cfg.code_channels, *(s // f for s in z_e_shape[1:]))
    return (cfg.d_code,)


def build_mapping(cfg: MappingConfig, z_e_shape: tuple[int, ...], z_g_shape: tuple[int, ...]
                  ) -> tuple[MappingHalf, MappingHalf]:
    """F_E and F_D as two separate modules: the sender needs only F_E, the receiver only F_D."""
    z_e_shape, z_g_shape = tuple(z_e_shape), tuple(z_g_shape)
    c_shape = code_shape(cfg, z_e_shape)
    d_e, d_c, d_g = numel(z_e_shape), numel(c_shape), numel(z_g_shape)
    if cfg.arch == "residual_mlp":
        from squeeze3d.mapping.residual_mlp import ResidualMLP

        enc = ResidualMLP(d_e, d_c, cfg.hidden, cfg.dropout)
        dec = ResidualMLP(d_c, d_g, cfg.hidden, cfg.dropout)
    elif cfg.arch == "deep_residual_mlp":
        from squeeze3d.mapping.deep_residual_mlp import DeepResidualMLP

        enc = DeepResidualMLP(d_e, d_c, cfg.hidden, cfg.depth, cfg.dropout)
        dec = DeepResidualMLP(d_c, d_g, cfg.hidden, cfg.depth, cfg.dropout)
    elif cfg.arch == "official_mlp":
        from squeeze3d.mapping.official_mlp import official_halves

        enc, dec = official_halves(d_e, d_c, d_g, cfg.hidden, cfg.depth, cfg.dropout)
    elif cfg.arch == "unet3d":
        from squeeze3d.mapping.unet3d import UNetDecoder, UNetEncoder, check_grid

        check_grid(z_g_shape, len(cfg.unet_channels), "z_G")
        if tuple(z_g_shape[1:]) != tuple(z_e_shape[1:]):
            raise ValueError(f"unet3d needs z_E and z_G on the same grid, got {z_e_shape} and {z_g_shape}")
        enc = UNetEncoder(z_e_shape, cfg.unet_channels, cfg.code_channels, cfg.dropout)
        dec = UNetDecoder(z_g_shape, cfg.unet_channels, cfg.code_channels, cfg.dropout)
    else:
        raise ValueError(f"unknown mapping architecture {cfg.arch!r}")
    return (MappingHalf(enc, z_e_shape, c_shape, "encoder", cfg.code_bound),
            MappingHalf(dec, c_shape, z_g_shape, "decoder"))


class Mapping(nn.Module):
    """F_E and F_D held together for training; ``forward`` returns (code, standardised ẑ_G)."""

    def __init__(self, f_e: MappingHalf, f_d: MappingHalf):
        super().__init__()
        self.f_e, self.f_d = f_e, f_d

    def forward(self, z_e: torch.Tensor, noise_bits: int = 0,
                prefixes: list[int] | tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
        """``noise_bits > 0``: F_D sees the code plus one k-bit step of uniform noise (quantisation-
        aware training); ``prefixes``: F_D sees each row cut to a random one of these lengths
        (nested codes, ``prefix_mask``). The returned code is the clean one (the gram term
        regularises it)."""
        code = self.f_e(z_e)
        seen = quantisation_noise(code, noise_bits) if noise_bits else code
        if prefixes:
            seen = seen * prefix_mask(code.shape[0], code.shape[1], prefixes, code.device)
        return code, self.f_d.forward_std(seen)


def prefix_mask(rows: int, d_code: int, prefixes, device, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[rows, d_code]`` 0/1 mask keeping the first k numbers of each row, k drawn uniformly from
    ``prefixes`` (torch's global RNG unless ``generator``). Zero is the middle of the tanh range, so a
    cut code is a valid code: the decoder learns to read the missing tail as "no detail"."""
    lengths = torch.tensor(list(prefixes), dtype=torch.long)
    k = lengths[torch.randint(len(lengths), (rows,), generator=generator)]
    return (torch.arange(d_code)[None, :] < k[:, None]).to(device, torch.float32)


def cut_code(code: torch.Tensor, k: int) -> torch.Tensor:
    """The first ``k`` numbers of codes ``[B, d]``, zero-padded back to ``d`` (what F_D reads for a
    stored prefix)."""
    if k >= code.shape[-1]:
        return code
    return torch.cat([code[..., :k], code.new_zeros(*code.shape[:-1], code.shape[-1] - k)], dim=-1)


__all__ = ["Mapping", "build_mapping", "code_shape", "cut_code", "numel", "prefix_mask"]
