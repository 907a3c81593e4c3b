"""Tiny mapping checkpoints trained in-process on the ``debug`` pair, for codec tests (one
helper for every test module that needs a real, bounded-code model on disk)."""

from pathlib import Path

import torch

BOUNDED = ["optim.epochs=2", "mapping.code_bound=tanh", "loss.code_noise_bits=8", "mapping.d_code=24"]
"""A 24-number tanh-bounded code trained with 8-bit quantisation noise."""


def train_debug_checkpoint(dest: Path, sets: list[str], pair: str = "debug") -> str:
    """Fit 256 synthetic pairs on one torch thread (deterministic) and save the checkpoint."""
    from squeeze3d.config import train_config_for_pair
    from squeeze3d.mapping.checkpoint import save_checkpoint
    from squeeze3d.synth.in_process import synthesise
    from squeeze3d.train.loop import TensorPairs, fit

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        z_e, z_g, _ = synthesise(pair, list(range(256)))
        cfg = train_config_for_pair(pair, sets=sets)
        r = fit(cfg, z_e.shape[1:], z_g.shape[1:], TensorPairs(z_e, z_g, 64))
    finally:
        torch.set_num_threads(threads)
    return str(save_checkpoint(dest, r.f_e, r.f_d, cfg))
