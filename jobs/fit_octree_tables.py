"""Recipe of the octree coder's shipped context tables (platform/squeeze3d/codec/octree/tables.safetensors).

    make corpus                                   # the real-object corpus (once)
    python jobs/fit_octree_tables.py              # ~10 min on 2 cores

Counts every coded occupancy bit of the real-object corpus' train split (Sweet Home 3D + FlightGear)
and of the procedural corpus' train split, each cloud at grids of 2-12 bits along its longest side:
- ``classical``: the clouds alone (the G-PCC-class path);
- ``neural``: the normalised clouds with the shipped pointnet_lion champion's own decode of them as the
  prior, for the ladder's rungs (the enhancement layer's contexts).
Train splits only: the test splits stay held out for docs/benchmarks.md.
"""

import argparse
import sys
import time

import numpy as np

from squeeze3d.codec.octree import fit, tables

BITS = np.arange(2.0, 12.01, 0.5)


def real_clouds(limit: int, seed: int = 0):
    from squeeze3d.realcorpus import load_index, load_mesh, sample_points, select

    index = load_index()
    objs = select(index, "train", sources=("sweethome3d", "flightgear"))
    pick = np.random.default_rng(seed).permutation(len(objs))[:limit]
    for i in sorted(pick):
        yield sample_points(load_mesh(objs[i], index), 2048, seed=int(i)).astype(np.float32)


def procedural_clouds(limit: int):
    from squeeze3d.corpora import points as corpus
    from squeeze3d.corpora import shapes as corpus_shapes
    from squeeze3d.io import sample_mesh

    idx = n = 0
    while n < limit:
        if corpus.split_of(idx) == "train":
            mesh, _ = corpus_shapes.make_mesh(corpus.DEFAULT_SEED, idx)
            yield np.asarray(sample_mesh(mesh, 2048, seed=idx), np.float32)
            n += 1
        idx += 1


def with_priors(clouds, pair: str, effort: int, rungs: list[tuple[int, int]]):
    """(normalised cloud, the codec's neural decode of it at each rung (prefix, bits))."""
    from squeeze3d.codec.compressor import get_codec

    codec = get_codec(pair)
    for pts in clouds:
        norm, _, _ = codec.handler.normalise(codec.handler.prepare(pts, codec.pair))
        code = codec.refine(norm, codec.encode(norm), effort)
        for prefix, bits in rungs:
            yield norm, codec.rung_decode(code, prefix, bits)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=int, default=600, help="real train-split objects")
    ap.add_argument("--procedural", type=int, default=200, help="procedural train-split objects")
    ap.add_argument("--neural-real", type=int, default=300, help="of those, how many also train the neural table")
    ap.add_argument("--neural-procedural", type=int, default=100)
    ap.add_argument("--pair", default="pointnet_lion")
    ap.add_argument("--effort", type=int, default=0, help="refinement steps of the prior's code")
    ap.add_argument("--out", default=str(tables.default_path()))
    a = ap.parse_args()
    t = time.perf_counter()
    clouds = [*real_clouds(a.real), *procedural_clouds(a.procedural)]
    print(f"{len(clouds)} train clouds ({time.perf_counter() - t:.0f} s)")
    classical = fit.count(((c, None) for c in clouds), BITS)
    print(f"classical: {int(sum(x.sum() for x in classical))} bits counted ({time.perf_counter() - t:.0f} s)")
    subset = clouds[:a.neural_real] + clouds[a.real:a.real + a.neural_procedural]
    rungs = [(32, 2), (64, 4), (256, 6)]
    neural = fit.count(with_priors(subset, a.pair, a.effort, rungs), BITS[BITS <= 9.0])
    print(f"neural: {int(sum(x.sum() for x in neural))} bits counted ({time.perf_counter() - t:.0f} s)")
    digest = tables.save_tables({"classical": tables.smooth(*classical), "neural": tables.smooth(*neural)}, a.out,
                                meta={"recipe": "jobs/fit_octree_tables.py", "real": a.real, "procedural": a.procedural,
                                      "neural_real": a.neural_real, "neural_procedural": a.neural_procedural,
                                      "pair": a.pair, "effort": a.effort, "rungs": rungs, "bits": BITS.tolist()})
    print(f"wrote {a.out} (sha256 {digest[:16]}…)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
