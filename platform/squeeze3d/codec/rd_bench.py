"""Point-cloud rate–distortion bench: this codec (every rung) against MPEG G-PCC and Draco, side by side.

Per object (a 2048-point reference cloud, in its own frame), every candidate is a whole file and
its D1-PSNR against the reference:

- ``octree``: the classical octree path at every grid (1/16-bit steps), container included;
- ``neural``: each rung of the shipped model's ladder (code prefix × bits), after the default
  refinement; ``neural+octree``: the shortest rung plus an enhancement layer at each grid;
- ``cli``: what ``squeeze3d compress`` writes by default (quality floor 30 dB), and with the gate
  off (``--min-quality off``), with their compress and decompress times;
- ``draco`` (the project's baseline call, bits 1..12) and ``draco_dedup`` (the same call on the cloud
  snapped to Draco's grid, duplicates removed), live;
- ``gpcc``: TMC13 v23 octree rows of the reference CSV for the bench's clouds (``--gpcc-csv``), or
  ``tmc3`` run live by the user (``--tmc3 PATH``; this project ships no G-PCC code or binary).

D1-PSNR: both clouds in the reference's unit-sphere frame (bounding-box centre, farthest point at
1), MPEG p2point, symmetric worst direction, peak = the reference's bounding-box diagonal — the
metric of the G-PCC anchors.
"""

from __future__ import annotations

import csv
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

FLOORS = (30.0, 35.0)
BD_RANGE = (25.0, 40.0)
MAX_DB = 46.0  # the octree ladders stop one grid past this quality


def d1(ref: np.ndarray, test: np.ndarray) -> float:
    from squeeze3d.metrics.pointcloud import d1_psnr_pair

    ref = np.asarray(ref, np.float64)
    c = (ref.max(0) + ref.min(0)) / 2
    s = max(float(np.linalg.norm(ref - c, axis=1).max()), 1e-12)
    return d1_psnr_pair(((ref - c) / s).astype(np.float32), ((np.asarray(test, np.float64) - c) / s).astype(np.float32))


def draco_curves(ref: np.ndarray, bits=range(1, 13)) -> dict[str, list[tuple[int, float]]]:
    from squeeze3d.baselines import draco

    out: dict[str, list] = {"draco": [], "draco_dedup": []}
    lo = ref.min(0).astype(np.float64)
    side = float((ref.max(0) - ref.min(0)).max())
    for b in bits:
        blob = draco.encode_points(ref, b)
        out["draco"].append((len(blob), d1(ref, draco.decode_points(blob))))
        step = side / (2 ** b - 1) if side > 0 else 1.0
        snapped = np.unique(np.round((ref - lo) / step), axis=0) * step + lo
        blob = draco.encode_points(snapped.astype(np.float32), b)
        out["draco_dedup"].append((len(blob), d1(ref, draco.decode_points(blob))))
    return out


def gpcc_from_csv(path: str | Path, split: str) -> dict[str, list[tuple[int, float]]]:
    """TMC13 octree rows of the anchors CSV (``split,object_id,codec,bits,bytes,d1_db``) per object."""
    out: dict[str, list] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["split"] == split and r["codec"] == "tmc13_octree":
                out.setdefault(r["object_id"], []).append((int(r["bytes"]), float(r["d1_db"])))
    return out


GPCC_BITS = tuple(np.arange(2.0, 10.01, 0.25))


def gpcc_live(tmc3: str, ref: np.ndarray, bits=GPCC_BITS) -> list[tuple[int, float]]:
    """Run a user's own ``tmc3`` (TMC13) on the reference at each grid, as the anchors were made:
    Draco's grid rule, integer PLY, geometry only; bytes = bitstream + 16 (origin and step)."""
    rows = []
    lo = ref.min(0).astype(np.float64)
    side = float((ref.max(0) - ref.min(0)).max())
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        for b in bits:
            step = side / (2 ** b - 1)
            q = np.unique(np.round((ref - lo) / step).astype(np.int64), axis=0)
            src = d / "src.ply"
            head = (f"ply\nformat ascii 1.0\nelement vertex {len(q)}\nproperty float x\nproperty float y\n"
                    "property float z\nend_header\n")
            src.write_text(head + "\n".join(" ".join(map(str, p)) for p in q) + "\n")
            subprocess.run([tmc3, "--mode=0", f"--uncompressedDataPath={src}", f"--compressedStreamPath={d / 's.bin'}",
                            "--geomTreeType=0", "--mergeDuplicatedPoints=1", "--disableAttributeCoding=1",
                            "--neighbourAvailBoundaryLog2=8", "--intra_pred_max_node_size_log2=6"],
                           check=True, capture_output=True)
            subprocess.run([tmc3, "--mode=1", f"--compressedStreamPath={d / 's.bin'}",
                            f"--reconstructedDataPath={d / 'rec.ply'}", "--outputBinaryPly=0"], check=True, capture_output=True)
            lines = (d / "rec.ply").read_text().split("end_header\n", 1)[1].split("\n")
            rec = np.array([[float(v) for v in ln.split()[:3]] for ln in lines if ln.strip()])
            rows.append(((d / "s.bin").stat().st_size + 16, d1(ref, rec * step + lo)))
    return rows


def ours(codec, ref: np.ndarray, effort: int | None, grids_step: int = 2, fresh_off: bool = False) -> dict:
    """Every candidate of this codec for one reference cloud, plus the CLI's default file and times.
    ``fresh_off``: the gate-off file refines afresh, so its compress time is a user's (``fresh``)."""
    from squeeze3d.codec import octree
    from squeeze3d.codec.decompress import decompress_bytes

    h = codec.handler
    out: dict = {"octree": [], "neural": [], "neural+octree": []}
    # the CLI's own files first, timed as a user's compress (its refinement included); the gate-off
    # files and the ladders below reuse that refinement (their time is a user's only with ``fresh_off``)
    # cli_off_code: the gate-off file without the octree layer (the neural code alone, as Draco-path
    # clouds and `--prefix` get it)
    for name, floor, kw in (("cli", 30.0, {}), ("cli_off", None, {}), ("cli_off_code", None, {"classical": "draco"})):
        fresh = name == "cli" or (name == "cli_off" and fresh_off)
        if fresh:
            codec._refined.clear()
        t0 = time.perf_counter()
        res = codec.compress_asset(ref, min_quality=floor, effort=effort, **kw)
        c_ms = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        dec = decompress_bytes(res.data, model=codec.model_ref)  # the model that wrote it, as a user passes --model
        d_ms = (time.perf_counter() - t0) * 1e3
        out[name] = {"bytes": res.nbytes, "d1": d1(ref, dec.data), "variant": res.variant, "compress_ms": c_ms,
                     "decompress_ms": d_ms, "fresh": fresh}
    fine, coarse = octree.exponent_range(ref, max_bits=12)
    for e in range(coarse, fine - 1, -grids_step):
        q, smooth = octree.best_reconstruction(ref, e, d1)  # as the codec decides it
        out["octree"].append((len(octree.encode_points(ref, e, smooth=smooth)) + 9, q))  # + the container
        if q > MAX_DB:  # the curves are compared up to 40 dB: finer grids only cost time
            break
    norm, centre, scale = h.normalise(ref)
    code = codec.refine(norm, codec.encode(norm), codec_effort(effort))
    rungs = [(v.prefix, v.bits) for v in codec.variants()]
    shortest = None
    for prefix, bits in rungs:
        rec = codec.rung_decode(code, prefix, bits)
        nbytes = len(codec.rung_file(code, prefix, bits, centre, scale))
        out["neural"].append((nbytes, d1(ref, h.denormalise(rec, centre, scale))))
        if shortest is None or nbytes < shortest[0]:
            shortest = (nbytes, rec)
    if shortest is not None:
        nb, prior = shortest
        for e in range(coarse, fine - 1, -2 * grids_step):
            ge = octree.exponent_for(octree.step_of(e) / scale)  # about the same grid in the normalised frame
            q, smooth = octree.best_reconstruction(norm, ge, lambda _, rec: d1(ref, h.denormalise(rec, centre, scale)))
            out["neural+octree"].append((nb + len(octree.encode_points(norm, ge, prior=prior, smooth=smooth)) + 1, q))
            if q > MAX_DB:
                break
    return out


def codec_effort(effort: int | None) -> int:
    from squeeze3d.codec import DEFAULT_EFFORT

    return DEFAULT_EFFORT if effort is None else int(effort)


def smallest_at(rows: list[tuple[int, float]], floor: float) -> int | None:
    ok = [b for b, q in rows if q >= floor]
    return min(ok) if ok else None


def envelope(rows: list[tuple[int, float]]) -> list[tuple[int, float]]:
    return sorted(rows)


def summarise(objects: dict[str, dict[str, list]], cli: dict[str, dict]) -> dict:
    """Per codec: median smallest file at each floor, median BD-rate vs G-PCC and vs Draco (25-40 dB)."""
    from squeeze3d.metrics.bdrate import bd_rate

    codecs = sorted({k for o in objects.values() for k in o})
    out: dict = {}
    for name in codecs:
        s: dict = {}
        for floor in FLOORS:
            got = [smallest_at(o[name], floor) for o in objects.values() if o.get(name)]
            got = [g for g in got if g is not None]
            s[f"median_bytes_ge_{floor:g}"] = statistics.median(got) if got else None
            s[f"reach_{floor:g}"] = len(got)
        for anchor in ("gpcc", "draco"):
            bds = []
            for o in objects.values():
                if o.get(anchor) and o.get(name):
                    bd = bd_rate([b for b, _ in o[anchor]], [q for _, q in o[anchor]], [b for b, _ in o[name]],
                                 [q for _, q in o[name]], quality_range=BD_RANGE)
                    if bd is not None:
                        bds.append(bd)
            s[f"bd_rate_vs_{anchor}"] = statistics.median(bds) if bds else None
        out[name] = s
    # the CLI's default file against G-PCC's and bare Draco's smallest file of at least its quality
    # (None where no object has that anchor's curve: a split G-PCC was not measured on)
    not_larger: dict = {}
    for anchor in ("gpcc", "draco"):
        wins = []
        for key, o in objects.items():
            if o.get(anchor):
                c = cli[key]["cli"]
                ok = [b for b, q in o[anchor] if q >= c["d1"] - 1e-9]
                wins.append((not ok) or c["bytes"] <= min(ok))
        not_larger[anchor] = sum(wins) if wins else None
    n = len(objects)
    med = lambda k, f: statistics.median(cli[o][k][f] for o in cli)  # noqa: E731
    out["cli_default"] = {"objects": n, "not_larger_than_gpcc": not_larger["gpcc"],
                          "not_larger_than_draco": not_larger["draco"],
                          "median_bytes": med("cli", "bytes"), "median_d1": med("cli", "d1"),
                          "median_compress_ms": med("cli", "compress_ms"),
                          "median_decompress_ms": med("cli", "decompress_ms")}
    for name, k in (("cli_gate_off", "cli_off"), ("cli_gate_off_code", "cli_off_code")):
        fresh = [cli[o][k]["compress_ms"] for o in cli if cli[o][k]["fresh"]]
        out[name] = {"median_bytes": med(k, "bytes"), "median_d1": med(k, "d1"),
                     "reach_30": sum(cli[o][k]["d1"] >= 30.0 for o in cli), "median_decompress_ms": med(k, "decompress_ms"),
                     # a user's compress time, refinement included: the objects that refined afresh
                     "median_compress_ms": statistics.median(fresh) if fresh else None, "timed_objects": len(fresh)}
    return out


def rd_plot(objects: dict[str, dict[str, list]], path: Path, title: str) -> Path:
    """Median over objects of the smallest file reaching each quality floor, per codec."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floors = np.arange(24.0, 45.01, 0.5)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in sorted({k for o in objects.values() for k in o}):
        xs, ys = [], []
        for f in floors:
            got = [smallest_at(o[name], f) for o in objects.values() if o.get(name)]
            got = [g for g in got if g is not None]
            if len(got) * 2 > len(objects):  # the median exists only while most objects reach the floor
                xs.append(statistics.median(got))
                ys.append(f)
        if xs:
            ax.plot(xs, ys, marker=".", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("bytes (median smallest file reaching the quality)")
    ax.set_ylabel("D1-PSNR (dB)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def run(refs: dict[str, np.ndarray], split: str, pair: str = "pointnet_lion", effort: int | None = None,
        gpcc_csv: str | Path | None = None, tmc3: str | None = None, grids_step: int = 2, time_off: int = 20,
        log: Callable[[str], None] = print, model: str | None = None) -> tuple[dict, dict, dict]:
    """Every codec on every reference cloud of one split → (per-object curves, CLI rows, summary).
    ``model``: a checkpoint directory or registry reference (default: the pair's champion, else the
    shipped model), as the CLI's ``--model``."""
    from squeeze3d.codec.compressor import get_codec

    codec = get_codec(pair, model)
    gpcc = gpcc_from_csv(gpcc_csv, split) if gpcc_csv and not tmc3 else {}
    objects: dict[str, dict] = {}
    cli: dict[str, dict] = {}
    for i, (key, ref) in enumerate(refs.items()):
        mine = ours(codec, ref, effort, grids_step, fresh_off=i < time_off)
        cli[key] = {k: mine.pop(k) for k in ("cli", "cli_off", "cli_off_code")}
        curves = {**mine, **draco_curves(ref)}
        if tmc3:
            curves["gpcc"] = gpcc_live(tmc3, ref)
        elif key in gpcc:
            curves["gpcc"] = gpcc[key]
        # our envelope: the best file of any of our paths at each quality
        curves["ours"] = [x for k in ("octree", "neural", "neural+octree") for x in curves[k]]
        objects[key] = curves
        if (i + 1) % 10 == 0:
            log(f"  {split}: {i + 1}/{len(refs)} objects")
    return objects, cli, summarise(objects, cli)
