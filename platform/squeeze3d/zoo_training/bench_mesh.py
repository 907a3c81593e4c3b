"""Measurements of the mesh pair's mini zoo (G = mini Shap-E, E = mini MeshAnything), on held-out
textured corpus objects (``corpora.meshes`` test split: never seen by G's renderer or prior, nor by E):

- **G's reconstruction** (its own ceiling): the fitted held-out latents (renderer frozen, see
  ``shap_e_train.fit_latents``) decoded with ``decode_to_mesh`` against the corpus object: render
  PSNR / MS-SSIM over the metric ring (``metrics.mesh``), Chamfer and F-score@0.02;
- **prompt adherence**: a linear classifier on E's pooled features, trained on train-split corpus
  objects (its own test accuracy is reported), judges the category of samples drawn for captions
  "a {style} {category} made of {material}"; the share whose category matches the prompt's;
- **diversity per prompt**: mean pairwise Chamfer between samples of one prompt (different seeds),
  beside the mean between samples of different prompts drawn with the *same* seed (how much the
  prompt, rather than the noise, moves a sample: ~0 means G ignores the prompt);
- time per mesh: prior sampling, decode, encode (this CPU, one thread).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import numpy as np
import torch

from squeeze3d.corpora import meshes as mesh_corpus
from squeeze3d.meshdata import sample_surface
from squeeze3d.metrics.mesh import chamfer_fscore, render_ms_ssim, render_psnr, render_ring, surface_samples


def reconstruction(gen, latents: np.ndarray, indices: np.ndarray, seed: int = mesh_corpus.DEFAULT_SEED) -> dict:
    rows = []
    for z, i in zip(latents, indices):
        ref = mesh_corpus.make_textured(seed, int(i)).mesh
        t0 = time.perf_counter()
        rec = gen.decode_meshes(torch.from_numpy(np.asarray(z, np.float32))[None])[0]
        ms = (time.perf_counter() - t0) * 1e3
        if rec.num_faces == 0:
            rows.append({"psnr": float("nan"), "ms_ssim": 0.0, "chamfer": float("nan"), "fscore": 0.0, "decode_ms": ms})
            continue
        a, b = render_ring(ref), render_ring(rec)
        ch, f = chamfer_fscore(surface_samples(ref), surface_samples(rec))
        rows.append({"psnr": render_psnr(a, b), "ms_ssim": render_ms_ssim(a, b), "chamfer": ch, "fscore": f, "decode_ms": ms})
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]} | {"objects": len(rows),
                                                                          "empty": sum(r["fscore"] == 0 for r in rows)}


def _features(encoder, samples: np.ndarray) -> torch.Tensor:
    z = encoder.encode(torch.from_numpy(samples))
    return torch.cat([z[:, 0], z[:, 1:].mean(1)], dim=1)


def train_category_probe(encoder, train_idx: np.ndarray, test_idx: np.ndarray, seed: int = mesh_corpus.DEFAULT_SEED,
                         steps: int = 500) -> tuple[torch.nn.Module, float]:
    """A linear probe on E's pooled features: ``(probe, test accuracy)``."""
    def feats(idx):
        s = np.stack([sample_surface(mesh_corpus.make_textured(seed, int(i)).mesh, 2048, seed=0) for i in idx])
        return _features(encoder, s), torch.tensor([mesh_corpus.corpus.category_of(int(i)) for i in idx])

    xtr, ytr = feats(train_idx)
    xte, yte = feats(test_idx)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    probe = torch.nn.Linear(xtr.shape[1], len(mesh_corpus.CATEGORIES))
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(probe((xtr - mu) / sd), ytr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    probe.eval()
    norm = lambda x: (x - mu) / sd  # noqa: E731

    class _Probe(torch.nn.Module):
        def forward(self, x):
            return probe(norm(x))

    with torch.no_grad():
        acc = float((probe(norm(xte)).argmax(1) == yte).float().mean())
    return _Probe(), acc


def adherence_and_diversity(gen, encoder, probe, per_category: int = 2, seeds: int = 3,
                            log: Callable[[str], None] = print) -> dict:
    rng = np.random.default_rng(0)
    prompts, labels = [], []
    for k, cat in enumerate(mesh_corpus.CATEGORIES):
        for _ in range(per_category):
            style = mesh_corpus.STYLES[int(rng.integers(len(mesh_corpus.STYLES)))]
            mat = mesh_corpus.MATERIALS[int(rng.integers(len(mesh_corpus.MATERIALS)))]
            prompts.append(mesh_corpus.caption_of(cat, style, mat, mat, 0))
            labels.append(k)
    hits, within, sample_s, encode_s, clouds = [], [], [], [], []
    for p, lab in zip(prompts, labels):
        t0 = time.perf_counter()
        _, assets = gen.sample([(p, s) for s in range(seeds)])
        sample_s.append((time.perf_counter() - t0) / seeds)
        t0 = time.perf_counter()
        with torch.no_grad():
            pred = probe(_features(encoder, assets.numpy())).argmax(1)
        encode_s.append((time.perf_counter() - t0) / seeds)
        hits += (pred == lab).tolist()
        pts = [a[:, :3].numpy() for a in assets]
        clouds.append(pts[0])
        within += [chamfer_fscore(a, b)[0] for a, b in itertools.combinations(pts, 2)]
        log(f"[bench-mesh] {p!r}: predicted {[mesh_corpus.CATEGORIES[int(i)] for i in pred]}")
    across = [chamfer_fscore(a, b)[0] for a, b in itertools.combinations(clouds, 2)]
    return {"prompts": len(prompts), "samples": len(hits), "adherence": float(np.mean(hits)),
            "chamfer_within_prompt": float(np.mean(within)), "chamfer_same_seed_across_prompts": float(np.mean(across)),
            "sample_and_decode_s": float(np.mean(sample_s)), "encode_s": float(np.mean(encode_s))}
