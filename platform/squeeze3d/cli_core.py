"""Core CLI commands: ``pairs``, ``config`` and ``registry``."""

from __future__ import annotations

import argparse

from squeeze3d.errors import UserError


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
    from squeeze3d.pairs import UnknownPairError

    try:
        cfg = train_config_for_pair(args.pair, args.config, args.set)
    except (ConfigError, UnknownPairError) as e:
        raise UserError(str(e)) from e
    print(describe(cfg))
    return 0


def _cmd_registry_best(args: argparse.Namespace) -> int:
    from squeeze3d import registry
    from squeeze3d.pairs import UnknownPairError, get_pair
    from squeeze3d.tracking import tracking_uri

    try:
        get_pair(args.pair)
    except UnknownPairError as e:
        raise UserError(str(e)) from e
    registry.use_cli_network_defaults()
    info = registry.champion(args.pair)
    if info is None:
        raise UserError(f"no champion for pair {args.pair!r} in {tracking_uri()}; run `make sweep PAIR={args.pair}` "
                        f"or `make train PAIR={args.pair}` first")
    print(f"{info.name} version {info.version} (alias champion)")
    print(f"  load:      models:/{info.name}/{info.version}   (or models:/{info.name}@champion)")
    print(f"  objective: {info.tags.get('objective')} = {info.tags.get('objective_value')}")
    for k in sorted(info.tags):
        if k.startswith(("val_", "test_")) or k in ("d_code", "lambda_gram", "arch", "dataset_uri",
                                                      "dataset_manifest_hash", "weights_hash"):
            print(f"  {k}: {info.tags[k]}")
    print(f"  run:       {info.run_id}   tracking: {tracking_uri()}")
    return 0


def _cmd_registry_list(args: argparse.Namespace) -> int:
    from squeeze3d import registry

    registry.use_cli_network_defaults()
    rows = registry.list_versions(args.pair)
    if not rows:
        print("no registered squeeze3d models")
        return 0
    print(f"{'model':28} {'ver':>4}  {'objective':>10}  {'d_code':>6}  {'lambda_gram':>11}  aliases")
    for v in rows:
        print(f"{v.name:28} {v.version:>4}  {v.tags.get('objective_value', '-'):>10.10}  "
              f"{v.tags.get('d_code', '-'):>6}  {v.tags.get('lambda_gram', '-'):>11.11}  {','.join(v.aliases)}")
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

    reg = sub.add_parser("registry", help="look up registered mapping models (MLflow)")
    rsub = reg.add_subparsers(dest="registry_command", metavar="SUBCOMMAND")
    rsub.required = True
    p = rsub.add_parser("best", help="the champion of a pair: version, metrics, d_C and the URI to load")
    p.add_argument("--pair", default="pointnet_lion")
    p.set_defaults(func=_cmd_registry_best)
    p = rsub.add_parser("list", help="all registered versions")
    p.add_argument("--pair", default=None)
    p.set_defaults(func=_cmd_registry_list)
