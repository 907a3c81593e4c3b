"""``squeeze3d dataset validate|stats``: check and describe a synthetic dataset (local or s3://)."""

from __future__ import annotations

import argparse
import json


def _cmd_validate(args: argparse.Namespace) -> int:
    from squeeze3d.synth.validate import validate_dataset

    rep = validate_dataset(args.uri)
    print(rep.describe())
    return 0 if rep.ok else 1


def _cmd_stats(args: argparse.Namespace) -> int:
    from squeeze3d import storage
    from squeeze3d.errors import UserError
    from squeeze3d.synth.manifest import ManifestError
    from squeeze3d.synth.validate import dataset_stats

    try:
        stats = dataset_stats(args.uri, png=args.png or None, num_preview=args.samples)
    except (ManifestError, storage.StorageError) as e:
        raise UserError(str(e)) from e
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"{stats['uri']}  pair={stats['pair']}  rows={stats['rows']}  "
          + "  ".join(f"{k}={v}" for k, v in stats["splits"].items()))
    for name in ("z_e", "z_g"):
        s = stats[name]
        d_eff = f"{s['d_eff']:.1f}" if s["d_eff"] is not None else "-"
        print(f"  {name}: dim={s['dim']} mean={s['mean']:+.4f} std={s['std']:.4f} "
              f"per-dim std [{s['dim_std_min']:.4f}, {s['dim_std_max']:.4f}] |z|={s['norm_mean']:.3f} "
              f"range [{s['min']:.3f}, {s['max']:.3f}] d_eff={d_eff}")
    if stats.get("png"):
        print(f"  samples: {stats['png']}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("dataset", help="validate or describe a synthetic (z_E, z_G) dataset")
    dsub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    dsub.required = True

    v = dsub.add_parser("validate", help="schema, shapes, NaN/Inf, ids, counts and checksums vs the manifest "
                                         "(exit 1 on any problem)")
    v.add_argument("uri", help="dataset root: a local directory or s3://bucket/prefix")
    v.set_defaults(func=_cmd_validate)

    s = dsub.add_parser("stats", help="rows per split, latent statistics, a PNG of decoded samples")
    s.add_argument("uri", help="dataset root: a local directory or s3://bucket/prefix")
    s.add_argument("--png", default="out/dataset-samples.png",
                   help="where to write the preview picture ('' to skip; default %(default)s)")
    s.add_argument("--samples", type=int, default=6, help="samples to decode into the picture")
    s.add_argument("--json", action="store_true", help="print the statistics as JSON")
    s.set_defaults(func=_cmd_stats)
