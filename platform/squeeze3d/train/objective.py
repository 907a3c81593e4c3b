"""The training objective, assembled from ``LossConfig`` and what the pair declares.

    loss = λ_gen·MSE(ẑ_G, z_G)                      (standardised z_G: the paper's latent loss)
         + λ_gram·‖Z Zᵀ − I‖²_F                      (the paper's code decorrelation)
         + λ_set·Chamfer(xyz(ẑ_G), xyz(z_G))         (latent point set, pair.latent_points)
         + λ_output·Chamfer(G(ẑ_G), G(z_G))          (decoded clouds, pair.loss_decoder; the
                                                      pair's output_distance instead of Chamfer
                                                      when it declares one, e.g. grids)
         + λ_rate·bits(code)                         (the code's k-bit levels priced by a running
                                                      histogram: ``mapping/rate.py``)

Nothing here names a pair: the set and output terms ask the pair registry for the declarations,
and a pair without them gets a clear error when those weights are non-zero.
"""

from __future__ import annotations

import torch

from squeeze3d.config import ConfigError, TrainConfig
from squeeze3d.mapping.common import MappingHalf
from squeeze3d.mapping.losses import mapping_loss
from squeeze3d.mapping.rate import LevelRate
from squeeze3d.mapping.setloss import chamfer_sq, latent_point_xyz

TERMS = ("loss", "mse", "gram", "set", "output", "rate")


class Objective:
    """Callable ``(code, pred_std, z_g, f_d) -> {term: scalar}``; built once per fit."""

    def __init__(self, cfg: TrainConfig, device: torch.device | str, seed: int = 0):
        self.lo = cfg.loss
        self.layout: tuple[int, int, int] | None = None
        self.decoder: torch.nn.Module | None = None
        self.distance = chamfer_sq
        self.gen = torch.Generator().manual_seed(int(seed) + 7)
        self.device = device
        self.rate: LevelRate | None = None  # built at the first batch, when the code width is known
        if self.lo.lambda_set > 0 or self.lo.lambda_output > 0:
            from squeeze3d.pairs import get_pair

            pair = get_pair(cfg.pair)
            if self.lo.lambda_set > 0:
                if pair.latent_points is None:
                    raise ConfigError(f"loss.lambda_set > 0 but pair {pair.name!r} declares no latent point set "
                                      "(PairSpec.latent_points); use loss.lambda_gen or loss.lambda_output")
                self.layout = tuple(pair.latent_points)
            if self.lo.lambda_output > 0:
                if pair.loss_decoder is None:
                    raise ConfigError(f"loss.lambda_output > 0 but pair {pair.name!r} has no differentiable "
                                      "decoder (PairSpec.loss_decoder)")
                self.decoder = pair.loss_decoder(str(device))
                if pair.output_distance is not None:
                    self.distance = pair.output_distance
                for p in self.decoder.parameters():
                    p.requires_grad_(False)
                self.decoder.eval()

    def _decode(self, z_g: torch.Tensor) -> torch.Tensor:
        """Decoded clouds; with ``output_points`` a random subset of that many points (the decoder
        subsets before decoding when it can, else the output is subset here). Other assets (grids)
        come back whole."""
        k = self.lo.output_points
        x = self.decoder(z_g, keep=k, generator=self.gen)
        if x.ndim == 3 and 0 < k < x.shape[1]:
            x = x[:, torch.randperm(x.shape[1], generator=self.gen)[:k].to(x.device)]
        return x

    def __call__(self, code: torch.Tensor, pred_std: torch.Tensor, z_g: torch.Tensor, f_d: MappingHalf,
                 lambda_gram: float | None = None) -> dict[str, torch.Tensor]:
        lo = self.lo
        lg = lo.lambda_gram if lambda_gram is None else lambda_gram
        out = mapping_loss(code, pred_std, f_d.norm(z_g), lo.lambda_gen, lg, lo.gram_variant)
        zero = torch.zeros((), device=code.device)
        out["set"], out["output"], out["rate"] = zero, zero, zero
        if lo.lambda_rate > 0:
            if self.rate is None:
                self.rate = LevelRate(code[0].numel(), lo.code_noise_bits, code.device)
            # training batches update the histogram; validation only reads it
            out["rate"] = self.rate(code, update=torch.is_grad_enabled()).mean()
            out["loss"] = out["loss"] + lo.lambda_rate * out["rate"]
        if self.layout is not None or self.decoder is not None:
            pred = f_d.norm.inverse(pred_std)
            if self.layout is not None:
                out["set"] = chamfer_sq(latent_point_xyz(pred, self.layout), latent_point_xyz(z_g, self.layout)).mean()
            if self.decoder is not None:
                pz, tz = pred, z_g
                k = lo.output_batch
                if torch.is_grad_enabled() and 0 < k < pred.shape[0]:  # training: a random subset of rows
                    rows = torch.randperm(pred.shape[0], generator=self.gen)[:k].to(pred.device)
                    pz, tz = pred[rows], z_g[rows]
                with torch.no_grad():
                    target = self._decode(tz)
                out["output"] = self.distance(self._decode(pz), target).mean()
            out["loss"] = out["loss"] + lo.lambda_set * out["set"] + lo.lambda_output * out["output"]
        return out
