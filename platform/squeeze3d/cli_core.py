"""Core CLI commands: ``pairs``, ``config`` and ``registry``."""

from __future__ import annotations

import argparse

from squeeze3d.errors import UserError
from squeeze3d.pairs.declared import PAIR_HELP, pair_arg


def _cmd_pairs(args: argparse.Namespace) -> int:
    from squeeze3d import pairs
    from squeeze3d.pairs import declared

    if getattr(args, "pairs_command", None) == "add":
        return _cmd_pairs_add(args)
    rows = []
    for name in pairs.names():
        p = pairs.get_pair(name)
        rows.append((p.name, p.asset_kind, p.condition_kind, "x".join(map(str, p.z_e_shape)),
                     "x".join(map(str, p.z_g_shape)), p.mapping.get("arch", "-"), "registered", p.description))
    for name, files in sorted(declared.declared_files().items()):
        src = str(files[0]) if len(files) == 1 else f"{len(files)} files: {', '.join(map(str, files))}"
        try:
            p = pairs.get_pair(name)
            rows.append((p.name, p.asset_kind, p.condition_kind, "x".join(map(str, p.z_e_shape)),
                         "x".join(map(str, p.z_g_shape)), p.mapping.get("arch", "-"), src, p.description))
        except pairs.UnknownPairError as e:  # listed anyway: a missing checkpoint must not hide the others
            rows.append((name, "?", "?", "?", "?", "-", src, f"(unusable: {e})"))
    header = ("pair", "asset", "condition", "z_E", "z_G", "mapping", "source", "description")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    return 0


def _cmd_pairs_add(args: argparse.Namespace) -> int:
    """Validate a pair file and copy it into the user's pairs directory (``pairs.declared.user_dir``)."""
    import shutil

    from squeeze3d.pairs import UnknownPairError, declared, get_pair

    try:
        decl = declared.read_declaration(args.file)
    except UnknownPairError as e:
        raise UserError(str(e)) from e
    raws = {f"{k}.checkpoint": decl.doc[k].get("checkpoint") for k in ("encoder", "generator")
            if isinstance(decl.doc[k], dict)} | {"tuning": decl.doc.get("tuning")}
    for key, raw in raws.items():
        if raw and not str(raw).startswith(("/", "~", "$")):
            raise UserError(f"{decl.path}: {key} {raw!r} is relative to the pair file, which moves: "
                            f"write it absolute or with ${{VAR}} before adding")
    dest = declared.user_dir() / f"{decl.name}.yaml"
    others = [f for f in declared.declared_files().get(decl.name, []) if f != dest.resolve() and f != decl.path]
    if others:
        raise UserError(f"pair {decl.name!r} is already declared by {others[0]}")
    if dest.exists() and not args.force:
        raise UserError(f"{dest} exists; pass --force to replace it")
    try:
        spec = get_pair(str(decl.path))  # loads the models once: the latent shapes must be readable
    except UnknownPairError as e:
        raise UserError(str(e)) from e
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".yaml.tmp")
    shutil.copyfile(decl.path, tmp)
    tmp.replace(dest)
    print(f"added pair {spec.name} (z_E {'x'.join(map(str, spec.z_e_shape))}, z_G {'x'.join(map(str, spec.z_g_shape))})"
          f" -> {dest}")
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
    from squeeze3d.tracking import display_uri, tracking_uri

    try:
        get_pair(args.pair)
    except UnknownPairError as e:
        raise UserError(str(e)) from e
    registry.use_cli_network_defaults()
    info = registry.champion(args.pair)
    if info is None:
        raise UserError(f"no champion for pair {args.pair!r} in {display_uri(tracking_uri())}; run `make sweep PAIR={args.pair}` "
                        f"or `make train PAIR={args.pair}` first")
    print(f"{info.name} version {info.version} (alias champion)")
    print(f"  load:      models:/{info.name}/{info.version}   (or models:/{info.name}@champion)")
    print(f"  objective: {info.tags.get('objective')} = {info.tags.get('objective_value')}")
    for k in sorted(info.tags):
        if k.startswith(("val_", "test_")) or k in ("d_code", "lambda_gram", "arch", "dataset_uri",
                                                      "dataset_manifest_hash", "weights_hash"):
            print(f"  {k}: {display_uri(info.tags[k])}")
    print(f"  run:       {info.run_id}   tracking: {display_uri(tracking_uri())}")
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
    p = sub.add_parser("pairs", help="list encoder-generator pairs (registered and declared in pair files)")
    p.set_defaults(func=_cmd_pairs)
    psub = p.add_subparsers(dest="pairs_command", metavar="SUBCOMMAND")
    a = psub.add_parser("add", help="validate a pair file (loads its models) and copy it into the user pairs "
                        "directory ($SQUEEZE3D_PAIRS_DIR, else ~/.config/squeeze3d/pairs)")
    a.add_argument("file", help="path/to/pair.yaml (docs/plug_in_models.md)")
    a.add_argument("--force", action="store_true", help="replace a file of the same name there")
    a.set_defaults(func=_cmd_pairs)

    p = sub.add_parser("config", help="show the resolved training config of a pair, with field help")
    p.add_argument("--pair", default="debug", type=pair_arg, help=PAIR_HELP)
    p.add_argument("--config", default=None, help="YAML file with overrides")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. --set mapping.d_code=256 (repeatable)")
    p.set_defaults(func=_cmd_config)

    reg = sub.add_parser("registry", help="look up registered mapping models (MLflow)")
    rsub = reg.add_subparsers(dest="registry_command", metavar="SUBCOMMAND")
    rsub.required = True
    p = rsub.add_parser("best", help="the champion of a pair: version, metrics, d_C and the URI to load")
    p.add_argument("--pair", default="pointnet_lion", type=pair_arg, help=PAIR_HELP)
    p.set_defaults(func=_cmd_registry_best)
    p = rsub.add_parser("list", help="all registered versions")
    p.add_argument("--pair", default=None, type=pair_arg, help=PAIR_HELP)
    p.set_defaults(func=_cmd_registry_list)
