"""Core CLI commands: ``pairs`` and ``config``."""

from __future__ import annotations

import argparse


def _cmd_pairs(args: argparse.Namespace) -> int:
    from squeeze3d import pairs

    rows = []
    for name in pairs.names():
        p = pairs.get_pair(name)
        rows.append((p.name, p.asset_kind, p.condition_kind, "x".join(map(str, p.z_e_shape)),
                     "x".join(map(str, p.z_g_shape)), p.mapping.get("arch", "-"), p.description))
    header = ("pair", "asset", "condition", "z_E", "z_G", "mapping", "description")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from squeeze3d.config import ConfigError, describe, train_config_for_pair
    from squeeze3d.errors import UserError
    from squeeze3d.pairs import UnknownPairError

    try:
        cfg = train_config_for_pair(args.pair, args.config, args.set)
    except (ConfigError, UnknownPairError) as e:
        raise UserError(str(e)) from e
    print(describe(cfg))
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("pairs", help="list registered encoder-generator pairs")
    p.set_defaults(func=_cmd_pairs)

    p = sub.add_parser("config", help="show the resolved training config of a pair, with field help")
    p.add_argument("--pair", default="debug")
    p.add_argument("--config", default=None, help="YAML file with overrides")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. --set mapping.d_code=256 (repeatable)")
    p.set_defaults(func=_cmd_config)
