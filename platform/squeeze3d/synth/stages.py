"""Ray Data actor classes: the generator and encoder stages of the synthetic-pair pipeline.

Each actor builds its model once (``PairSpec.build_generator/build_encoder``) on the device it was
given, then processes numpy batches. Nothing here is pair-specific: a pair only provides models.
The same classes run in-process too (``bare_loop`` uses them), so the measured Ray overhead is
overhead and not a different code path.
"""

from __future__ import annotations

import numpy as np


def _node_id() -> str:
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - only a label for statistics
        pass
    return "local"


def _threads(cpus: float) -> None:
    # Ray already sets OMP_NUM_THREADS from num_cpus; torch reads it once at import, so make the
    # actor's intra-op thread count explicit: oversubscribed threads slow small models down a lot.
    import torch

    torch.set_num_threads(max(1, int(cpus)))


class GenerateStage:
    """conditions -> (z_G, assets). Input columns: ``condition`` (+ pass-through columns);
    output adds ``z_g`` and ``assets`` float32 arrays and ``node_g`` (which node did the work)."""

    def __init__(self, pair: str, device: str = "cpu", condition_kind: str | None = None,
                 cpus: float | None = None, source=None, options: dict | None = None):
        from squeeze3d.pairs import get_pair
        from squeeze3d.synth.conditions import source_for

        if cpus is not None:
            _threads(cpus)
        spec = get_pair(pair)
        self.generator = spec.build_generator(device, **options) if options else spec.build_generator(device)
        # The planned source (a prompt table needs its URI and k); noise seeds need no arguments.
        self.source = source if source is not None else source_for(condition_kind or spec.condition_kind)
        self.node = _node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        conditions = self.source.generator_conditions(batch)
        z_g, assets = self.generator.sample(conditions)
        out = dict(batch)
        out["z_g"] = z_g.cpu().numpy().astype(np.float32, copy=False)
        out["assets"] = assets.cpu().numpy().astype(np.float32, copy=False)
        out["node_g"] = np.full(len(conditions), self.node)
        return out


class EncodeStage:
    """assets -> z_E. Drops ``assets`` (they are large and not stored) and adds ``z_e``, ``node_e``."""

    def __init__(self, pair: str, device: str = "cpu", cpus: float | None = None):
        import torch

        from squeeze3d.pairs import get_pair

        if cpus is not None:
            _threads(cpus)
        self._torch = torch
        self.encoder = get_pair(pair).build_encoder(device)
        self.node = _node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {k: v for k, v in batch.items() if k != "assets"}
        # Ray hands over read-only zero-copy views; torch wants writable memory (copies only then)
        assets = np.require(batch["assets"], np.float32, ["C_CONTIGUOUS", "WRITEABLE"])
        z_e = self.encoder.encode(self._torch.from_numpy(assets))
        out["z_e"] = z_e.cpu().numpy().astype(np.float32, copy=False)
        out["node_e"] = np.full(len(z_e), self.node)
        return out
