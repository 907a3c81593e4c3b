"""Ray Train overhead: the same epochs on the same data, plain ``fit`` vs a ``TorchTrainer``.

efficiency = plain wall time / TorchTrainer wall time (goal ≥ 0.85). The TorchTrainer time includes
what a user pays for: worker start, Ray Data ingest, a checkpoint every epoch. End-task metrics are
off in both so the work compared is the same.
"""

from __future__ import annotations

import time

import torch

from squeeze3d.config import train_config_for_pair


def bench_train_overhead(pair: str = "debug", n: int = 2000, epochs: int = 20, workers: int = 1,
                         sets: list[str] | None = None, synthetic: bool = False, log=print) -> dict[str, float]:
    import ray

    from squeeze3d.synth.in_process import synthesise
    from squeeze3d.train.loop import TensorPairs, fit
    from squeeze3d.train.ray_train import build_trainer, connect_ray

    cfg = train_config_for_pair(pair, sets=[f"optim.epochs={epochs}", *(sets or [])])
    if synthetic:  # training cost does not depend on latent values: random latents of the pair's shapes
        from squeeze3d.pairs import get_pair

        spec = get_pair(pair)
        g = torch.Generator().manual_seed(0)
        ze, zg = torch.randn(n, *spec.z_e_shape, generator=g), torch.randn(n, *spec.z_g_shape, generator=g)
    else:
        ze, zg, _ = synthesise(pair, list(range(n)))
    n_val = max(2, n // 10)
    spec_shapes = (tuple(ze.shape[1:]), tuple(zg.shape[1:]))
    log(f"{pair}: {n} {'synthetic ' if synthetic else ''}pairs, {epochs} epochs, batch {cfg.optim.batch_size}, torch threads {torch.get_num_threads()}")

    t0 = time.perf_counter()
    fit(cfg, *spec_shapes, TensorPairs(ze[n_val:], zg[n_val:], cfg.optim.batch_size, seed=cfg.seed),
        TensorPairs(ze[:n_val], zg[:n_val], 256, shuffle=False, drop_last=False))
    plain = time.perf_counter() - t0
    log(f"plain fit:     {plain:.2f}s")

    connect_ray()
    rows = [{"z_e": ze[i].numpy(), "z_g": zg[i].numpy()} for i in range(n)]
    datasets = {"train": ray.data.from_items(rows[n_val:]), "val": ray.data.from_items(rows[:n_val])}
    trainer = build_trainer(cfg, datasets, workers=workers, max_failures=0,
                            loop_config={"endtask_rows": 0, "torch_threads": torch.get_num_threads()})
    t0 = time.perf_counter()
    trainer.fit()
    ray_s = time.perf_counter() - t0
    log(f"TorchTrainer:  {ray_s:.2f}s  (workers={workers})")
    eff = plain / ray_s
    log(f"efficiency plain/TorchTrainer = {eff:.3f}  (goal ≥ 0.85)")
    return {"plain_s": plain, "ray_s": ray_s, "efficiency": eff}
