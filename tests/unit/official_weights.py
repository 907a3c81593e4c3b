"""Tiny random weights written in the official file layouts of LION and NeRF-MAE (no download):
shared by the model tests and the declared real-pair tests (imported as ``official_weights``: pytest
puts this folder on ``sys.path``)."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml


def random_state(module: torch.nn.Module, seed: int, scale: float = 0.2, keep=()) -> dict[str, torch.Tensor]:
    """Gaussian values for every tensor of ``module``'s state dict; keys ending in ``keep`` stay as built."""
    g = torch.Generator().manual_seed(seed)
    return {k: (v if k.endswith(tuple(keep)) else torch.randn(v.shape, generator=g) * scale)
            for k, v in module.state_dict().items()}


def lion_cfg(c) -> dict:
    """A LION ``cfg.yml`` (yacs, nested) describing ``c`` (a ``LionOfficialConfig``), with the keys
    ``LionOfficialConfig.from_lion_cfg`` reads; the PVCNN width is not a cfg.yml key (read from weights)."""
    return {"data": {"tr_max_sample_points": c.num_points, "cond_on_cat": 0}, "clipforge": {"enable": 0},
            "ddpm": {"input_dim": c.input_dim, "time_dim": c.time_dim, "dropout": c.dropout,
                     "num_steps": c.num_steps, "beta_1": c.beta_1, "beta_T": c.beta_T, "sched_mode": "linear"},
            "latent_pts": {"style_dim": c.style_dim, "skip_weight": c.skip_weight,
                           "pts_sigma_offset": c.pts_sigma_offset, "style_mlp": ""},
            "shapelatent": {"latent_dim": c.latent_dim, "log_sigma_offset": c.log_sigma_offset},
            "sde": {"num_channels_dae": c.prior_channels, "num_cell_per_scale_dae": c.prior_blocks,
                    "embedding_dim": c.embedding_dim, "embedding_scale": c.embedding_scale,
                    "dropout": c.prior_dropout, "mixed_prediction": False}}


def write_lion_release(root: Path, config, seed: int = 1, with_cfg: bool = True):
    """A LION in the release layout: ``<root>/cfg.yml`` + ``<root>/checkpoints/model.pt``, the .pt
    holding both state dicts and the trainer's other entries (optimiser state with EMA copies).
    Returns (path of model.pt, vae state, dae state, EMA state)."""
    from squeeze3d.zoo.lion import official as lo

    model = lo.LionOfficial(config)
    vae, dae = random_state(model.vae, seed), random_state(model.dae, seed + 1)
    g = torch.Generator().manual_seed(seed + 2)
    ema = {i: {"step": torch.tensor(5.0), "exp_avg": torch.zeros(p.shape), "ema": torch.randn(p.shape, generator=g)}
           for i, (_, p) in enumerate(model.dae.named_parameters())}
    ckpt = {"epoch": 7, "global_step": 70, "vae_state_dict": vae, "dae_state_dict": dae,
            "dae_optimizer": {"state": ema, "param_groups": [{"lr": 2e-4, "params": list(ema)}]},
            "grad_scalar": {"scale": 65536.0, "growth_factor": 2.0}}
    (root / "checkpoints").mkdir(parents=True, exist_ok=True)
    if with_cfg:
        (root / "cfg.yml").write_text(yaml.safe_dump(lion_cfg(config)))
    path = root / "checkpoints" / "model.pt"
    torch.save(ckpt, path)
    return path, vae, dae, ema


def write_nerfmae_checkpoint(path: Path, config, seed: int = 1):
    """A NeRF-MAE checkpoint as run_swin_mae3d.py saves it ({epoch, state_dict, train_args}).
    Returns (path, state)."""
    from squeeze3d.zoo.nerfmae import swin3d as nm

    state = random_state(nm.SwinMAE3D(config), seed, scale=0.1, keep=("relative_position_index",))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 1200, "state_dict": state,
                "train_args": {"resolution": config.resolution, "backbone_type": "swin_s", "masking_prob": 0.75,
                               "lr": 1e-4, "gpus": "0,1", "normalize_density": True, "checkpoint": None}}, path)
    return path, state
