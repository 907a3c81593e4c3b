"""Codec commands: ``compress``, ``decompress``, ``inspect``, ``eval``, ``interpolate``."""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import sys
from pathlib import Path

from squeeze3d.codec.cli_batch import (
    decompress_jobs,
    jobs_for,
    plan_outputs,
    run_batch,
    skip_existing_output,
)
from squeeze3d.errors import InputError, UserError
from squeeze3d.pairs.declared import PAIR_HELP, pair_arg


def _quality(value: str) -> float | None:
    if value.lower() in ("off", "none"):
        return None
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of dB or 'off', got {value!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number of dB, got {value!r}")
    return v


def _os_errors(fn):
    """File-system failures (permissions, full disk) are the user's to fix: one line, exit 2. A
    compress setting the codec refuses (``OptionError``) is told by its flag (``--min-quality``)."""
    @functools.wraps(fn)
    def wrapper(args):
        from squeeze3d.codec.options import OptionError

        try:
            return fn(args)
        except OptionError as e:
            raise UserError(e.as_flag()) from None
        except BrokenPipeError:
            raise  # the reader of our output went away (`| head`): the CLI stops quietly
        except OSError as e:
            raise UserError(f"{e.filename or ''}: {e.strerror or e}".lstrip(": ")) from None
    return wrapper


def _resample_desc(codec) -> str:
    """What the codec keeps of an asset: the pair's resample (the code decodes to exactly that)."""
    return codec.handler.resample_desc(codec.asset_size)


def _summary_line(src, res, codec) -> str:
    handler = codec.handler
    c = res.container
    if c.codec == "neural":
        kind = res.variant
    elif c.coder == "octree":
        kind = "fallback octree"
    else:
        kind = f"fallback {handler.fallback_name} {c.draco_bits}-bit"
    q = f", {handler.quality_name} {res.psnr:.2f} dB vs the input" if res.psnr is not None else ""
    if handler.kind != "point_cloud" or res.decoded_points is None:
        # the paper's ratio: input file bytes / .sq3d bytes; the file decodes to the pair's resample
        cr = (f", {res.asset.file_bytes / res.nbytes:.0f}x smaller than the input file; decodes to "
              f"{_resample_desc(codec)}") if res.asset and res.asset.file_bytes else ""
        return f"{src} -> {res.output}: {res.nbytes} bytes ({kind}{q}{cr})"
    return f"{src} -> {res.output}: {res.nbytes} bytes ({kind}{q}{_cloud_tail(res, codec)})"


def _cloud_tail(res, codec) -> str:
    """Point clouds: the colour error beside D1, what the file decodes to, and the ratio against the
    geometry and attribute bytes it actually keeps (xyz float32 + RGB8 + intensity16 per decoded point)."""
    from squeeze3d.codec.attributes import LABELS, raw_bytes

    names = res.attributes
    aq = res.attribute_psnr or {}
    col = ""
    if "colour" in aq:
        col = f", colour Y-PSNR {aq['colour']:.2f} dB" if aq["colour"] != float("inf") else ", colour exact"
    n = int(res.decoded_points)
    kept = n * (12 + raw_bytes(names))
    what = " + ".join(["xyz f32"] + [{"colour": "RGB8", "intensity": "intensity16"}[k] for k in names])
    neural = res.container.codec == "neural" and not res.container.enhancement
    given = getattr(res.asset, "source_count", 0) if res.asset is not None else 0
    # a classical or layered file keeps the input's points on its grid: fewer only where several
    # fall in one cell (a coarse grid at a low rate merges many), which the line says in those words
    decodes = (_resample_desc(codec) if neural else
               f"one point per occupied grid cell ({n} cells from {given} input points)" if given and n < given else
               f"every input point ({n})")
    asset = res.asset
    dropped = tuple(getattr(asset, "unkept", ()) or ()) + (tuple(getattr(asset, "attributes", {}) or ())
                                                           if not names else ())
    drop = f"; dropped by --drop-attributes: {', '.join(LABELS.get(d, d) for d in dropped)}" if dropped else ""
    keeps = f"; keeps {', '.join(LABELS[k] for k in names)}" if names else ""
    return (f"{col}, {kept / res.nbytes:.1f}x smaller than the {n} points kept ({what}: {kept} bytes); "
            f"decodes to {decodes}{keeps}{drop}")


def _network_defaults() -> None:
    from squeeze3d.registry import use_cli_network_defaults

    use_cli_network_defaults()


def compress_options(args):
    """The compress flags as the library's ``CompressOptions`` (checked here, before any file is read)."""
    from squeeze3d.codec.options import CompressOptions

    return CompressOptions(dtype=args.dtype, quant=args.quant, min_quality=args.min_quality,
                           target_bytes=args.target_bytes, bits=args.bits, effort=args.effort, prefix=args.prefix,
                           classical=args.classical).validate()


@_os_errors
def _cmd_compress(args) -> int:
    from squeeze3d.codec.compressor import check_sq3d_output, compress_file, get_codec
    from squeeze3d.io import list_inputs

    _network_defaults()
    src, dst = Path(args.input), Path(args.output)
    options = compress_options(args)
    opts = dict(pair=args.pair, model=args.model, device=args.device, seed=args.seed, overwrite=bool(args.force),
                drop_attributes=bool(args.drop_attributes))
    if not src.is_dir():
        check_sq3d_output(dst, src)  # before "exists, pass --force", which would not help
        if skip_existing_output(src, dst, args):
            return 0
        codec = get_codec(args.pair, args.model, args.device)
        note = io.StringIO()
        with contextlib.redirect_stderr(note):  # the "model: ..." line, held back until it is news
            _ = codec.resolved  # the registry (or the checkpoint) first: a dead server fails before models load
        try:
            res = compress_file(src, dst, options, **opts)
        except InputError:
            raise  # the file is what is wrong: one line about it, not a line about the model first
        except BaseException:
            sys.stderr.write(note.getvalue())
            raise
        sys.stderr.write(note.getvalue())
        print(_summary_line(src, res, codec))
        return 0
    codec = get_codec(args.pair, args.model, args.device)
    files = list_inputs(src, codec.handler.input_exts)
    if not files:
        raise UserError(f"{src}: no supported input files")
    if dst.exists() and not dst.is_dir():
        raise UserError(f"{dst}: the output of a directory must be a directory")
    plan = plan_outputs([(f, dst / (f.stem + ".sq3d")) for f in files], args, "inputs")
    if not plan:
        print(f"nothing to do: all {len(files)} outputs exist in {dst}")
        return 0
    _ = codec.resolved  # resolve the model once, fail early
    if len(plan) > 1:
        codec.handler.tune_for_batch()
    outs = dict(plan)
    return run_batch([f for f, _ in plan], "compress",
                  lambda f: _summary_line(f, compress_file(f, outs[f], options, **opts), codec), jobs_for(codec, args))


def _check_model_of(path, c, model: str | None, device: str) -> None:
    """Before decoding a neural file: is the model at hand the one that wrote it? If not, say which
    model wrote it and how to get that one (the compressor's own check stays as the backstop)."""
    if c.codec != "neural":
        return
    from squeeze3d.codec.compressor import get_codec
    from squeeze3d.registry import model_name

    name = model_name(c.pair)
    if model is None and c.model_version is None and c.version >= 2:
        from squeeze3d.codec.decompress import model_for

        model_for(c, None, f"{path}: ")  # by its hash: the shipped model, the champion, or a registered version
        return
    if model is None and c.model_version is None:
        raise UserError(f"{path}: written by a mapping checkpoint given by path (weights hash {c.model_hash}), "
                        f"not a registry version; pass that checkpoint directory with --model PATH (its "
                        f"config.json has a weights_hash starting {c.model_hash})")
    ref = model if model is not None else str(c.model_version)
    r = get_codec(c.pair, ref, device).resolved
    if c.model_hash and r.weights_hash.startswith(c.model_hash):  # v1 files: 16 hex digits, v2: 8
        return
    wrote = (f"{name} version {c.model_version} (weights hash {c.model_hash})" if c.model_version
             else f"a checkpoint given by path (weights hash {c.model_hash})")
    if c.model_version and r.version == str(c.model_version):
        how = (f"this registry's version {r.version} is a different model, so the file comes from another "
               f"registry: point MLFLOW_TRACKING_URI at the registry that compressed it, or pass that model's "
               f"checkpoint directory with --model PATH")
    elif c.model_version:
        how = f"pass --model {c.model_version} (models:/{name}/{c.model_version}) to decode it with that model"
    else:
        how = "pass that checkpoint directory with --model PATH"
    raise UserError(f"{path}: written by {wrote}, but the model given is {r.uri} (weights hash "
                    f"{r.weights_hash[:16]}), which would decode it to a wrong shape; {how}")


@_os_errors
def _cmd_decompress(args) -> int:
    from squeeze3d.codec.container import read_container

    _network_defaults()
    src, dst = Path(args.input), Path(args.output)
    if not src.is_dir():
        from squeeze3d.assets.base import all_output_exts

        # cheap checks before torch is imported: bad files fail in a blink (the pair's kind decides
        # the exact formats later)
        if dst.suffix.lower() not in all_output_exts():
            raise InputError(f"{dst}: unsupported output format {dst.suffix or '(no extension)'!r}; "
                             f"use one of {', '.join(all_output_exts())}")
        if dst.resolve() == src.resolve():
            raise InputError(f"{dst}: output would overwrite the input")
        if skip_existing_output(src, dst, args):
            return 0
        c = read_container(src)
        _check_model_of(src, c, args.model, args.device)
    from squeeze3d.assets import handler_for
    from squeeze3d.codec.decompress import decompress_file
    from squeeze3d.codec.models import pair_for_codec

    def describe(r) -> str:
        return handler_for(pair_for_codec(r.container.pair).asset_kind).describe(r.data)

    if not src.is_dir():
        r = decompress_file(src, dst, model=args.model, device=args.device, drop_attributes=args.drop_attributes,
                            levels=args.levels)
        print(f"{src} -> {r.output}: {describe(r)}{_with_attrs(r)} ({r.container.codec}, {r.decode_ms:.1f} ms)")
        return 0
    files = sorted(f for f in src.iterdir() if f.suffix.lower() == ".sq3d")
    if not files:
        raise UserError(f"{src}: no .sq3d files")
    if dst.exists() and not dst.is_dir():
        raise UserError(f"{dst}: the output of a directory must be a directory")

    headers = {}  # each header read once here; an unreadable file gets its own error when it is decoded
    for f in files:
        try:
            headers[f] = read_container(f)
        except (UserError, OSError):
            headers[f] = None

    def out_for(f: Path) -> Path:
        fmt = args.format
        if fmt is None:  # the kind's first output format: ply for point clouds, npz for grids
            fmt = "ply"  # unreadable, or an unknown pair: its own error comes when it is decoded
            if headers[f] is not None:
                try:
                    fmt = handler_for(pair_for_codec(headers[f].pair).asset_kind).output_exts[0].lstrip(".")
                except UserError:
                    pass
        return dst / f"{f.stem}.{fmt}"

    plan = plan_outputs([(f, out_for(f)) for f in files], args, "files")
    if not plan:
        print(f"nothing to do: all {len(files)} outputs exist in {dst}")
        return 0
    outs = dict(plan)

    def one(f: Path) -> str:
        _check_model_of(f, headers[f] or read_container(f), args.model, args.device)
        r = decompress_file(f, outs[f], model=args.model, device=args.device, drop_attributes=args.drop_attributes,
                            levels=args.levels)
        return f"{f} -> {r.output}: {describe(r)}{_with_attrs(r)} ({r.container.codec})"

    todo = [f for f, _ in plan]
    return run_batch(todo, "decompress", one, decompress_jobs([headers[f] for f in todo], args))


def _with_attrs(r) -> str:
    from squeeze3d.codec.attributes import LABELS

    return f" with {', '.join(LABELS[k] for k in r.attributes)}" if r.attributes else ""


@_os_errors
def _cmd_inspect(args) -> int:
    from squeeze3d.codec.container import describe, read_container

    info = describe(read_container(args.input))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        for k, v in info.items():
            print(f"{k.ljust(width)}  {v}")
    return 0


@_os_errors
def _cmd_eval(args) -> int:
    from squeeze3d.codec.evaluate import evaluate

    _network_defaults()
    if args.input is not None and args.split_given:
        raise UserError("give either --split or --input, not both")
    rep = evaluate(pair=args.pair, model=args.model, split=args.split, input_dir=args.input, limit=args.limit,
                   out_dir=args.out, min_quality=args.min_quality, device=args.device, seed=args.seed,
                   previews=not args.no_previews, effort=args.effort, log=lambda m: print(m, file=sys.stderr))
    print(rep.markdown)
    print(f"\ntable: {rep.markdown_path}\ncsv:   {rep.csv_path}\nper-object csv: {rep.objects_csv_path}\n"
          f"rate-distortion: {rep.rd_png}\npreviews: {rep.preview_dir} ({len(rep.previews)} PNGs)")
    return 0


@_os_errors
def _cmd_interpolate(args) -> int:
    from squeeze3d.codec.interpolate import interpolate

    _network_defaults()
    paths = interpolate(args.a, args.b, args.steps, args.output, model=args.model, device=args.device,
                        fmt=args.format)  # None: the kind's default format
    for p in paths:
        print(p)
    return 0


def _cmd_serve(args) -> int:
    from squeeze3d.codec.server import serve

    if args.idle_timeout <= 0:
        raise UserError(f"--idle-timeout must be positive, got {args.idle_timeout}")
    # bound to the stream now: while a command runs, sys.stderr is its captured output
    return serve(args.cli_main, args.pair, args.idle_timeout, log=functools.partial(print, file=sys.stderr, flush=True))


class _SplitAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.split_given = True


def add_commands(sub) -> None:
    from squeeze3d.codec import (
        DEFAULT_DTYPE,
        DEFAULT_EFFORT,
        DEFAULT_MIN_QUALITY_DB,
        DEFAULT_PAIR,
        DEFAULT_QUANT,
        OFF_BUDGET_BYTES,
    )

    model_help = ("mapping model: models:/squeeze3d-PAIR@champion (default), a registry version number, a "
                  "models:/ URI or a checkpoint directory")

    def server_flag(p) -> None:
        p.add_argument("--no-server", action="store_true",
                       help="run in this process even when `squeeze3d serve` is running (also: SQUEEZE3D_NO_SERVER=1)")
        p.set_defaults(forwardable=True)

    def effort_flag(p) -> None:
        p.add_argument("--effort", type=int, default=None, metavar="STEPS",
                       help=f"test-time refinement of the code against the input, in optimisation steps (0: off; "
                            f"default {DEFAULT_EFFORT}); more steps: better quality, longer compress; the result "
                            "is the same for the same input and effort")

    def jobs_flag(p) -> None:
        p.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                       help="directory mode: files processed at once, in threads (default: one per core when "
                            "the pair's models allow it, else 1)")

    def overwrite_flags(p, what: str) -> None:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--force", action="store_true", help=f"overwrite existing {what} (default: refuse)")
        g.add_argument("--skip-existing", action="store_true",
                       help=f"leave existing {what} alone and process only the rest (resumable batch runs)")

    p = sub.add_parser(
        "compress", help="compress an asset (or a directory of them) to .sq3d",
        description="Compress an asset (or each supported file in a directory) to .sq3d. The neural rungs "
                    "keep the pair's resample of the asset (pointnet_lion: 2048 points; a mesh is sampled, a larger "
                    "cloud subsampled); the classical fallback (chosen when the floor asks for more, e.g. "
                    "--min-quality 40) keeps every input point, less exact duplicates on its grid. Per-point colour "
                    "and intensity (PLY, PCD, LAS/LAZ) are kept in every mode; other per-point data (normals, "
                    "labels) are refused unless --drop-attributes. For point clouds the quality is D1-PSNR against "
                    "the input as given (and colour PSNR on Y), and the reported ratio is the kept points' raw "
                    "bytes (xyz float32 + RGB8 + intensity16) / .sq3d bytes; other kinds report input file "
                    "bytes / .sq3d bytes (the paper's definition). Existing outputs are refused unless "
                    "--force or --skip-existing; a registry that does not answer fails after about "
                    "SQUEEZE3D_REGISTRY_TIMEOUT seconds (default 10).")
    p.add_argument("input", help="point-cloud pairs: PLY/OBJ/OFF/STL/GLB/GLTF mesh or cloud, NPY/NPZ array; "
                   "radiance-field pairs: NeRF-MAE .npz (rgbsigma + resolution) or a [4,R,R,R] .npy/.npz; "
                   "or a directory of them")
    p.add_argument("-o", "--output", required=True, help="OUT.sq3d (a directory when INPUT is one)")
    p.add_argument("--pair", default=DEFAULT_PAIR, type=pair_arg, help=PAIR_HELP)
    p.add_argument("--model", default=None, help=model_help)
    p.add_argument("--dtype", default=DEFAULT_DTYPE, choices=["fixed", "f32", "f16", "int8"],
                   help="code storage; default: the model's rate ladder (fixed-range k-bit codes for models "
                        "with bounded codes, else int8), chosen by the quality floor or --target-bytes")
    p.add_argument("--bits", type=int, default=None, metavar="K",
                   help="fixed-range codes: bits per code number (default: the ladder decides)")
    p.add_argument("--quant", default=DEFAULT_QUANT, choices=["per_vector", "per_group"],
                   help="int8 scales: one per code vector or one per 32 numbers")
    p.add_argument("--min-quality", "--target-quality", dest="min_quality", type=_quality,
                   default=DEFAULT_MIN_QUALITY_DB, metavar="DB",
                   help=f"quality floor in dB (point clouds: D1-PSNR, radiance fields: render PSNR): the smallest "
                        f"file that meets it is written, among the neural variants and the kind's classical codec "
                        f"(Draco / quantise+zstd) at each rate (default {DEFAULT_MIN_QUALITY_DB}; 'off' writes, unmeasured, a "
                        f"file of at most {OFF_BUDGET_BYTES} bytes: for point clouds the shortest code plus the "
                        f"octree enhancement layer that fits; with --prefix, --bits or --dtype that code alone)")
    p.add_argument("--target-bytes", type=int, default=None, metavar="B",
                   help="instead of a floor: the best quality whose .sq3d file fits in B bytes")
    effort_flag(p)
    p.add_argument("--prefix", type=int, default=None, metavar="K",
                   help="nested-code models: store only the first K code numbers (default: the ladder decides)")
    p.add_argument("--classical", default=None, choices=["octree", "draco"],
                   help="point clouds: the classical codec the quality floor may fall back to (default octree: "
                        "octree coding with trained contexts; draco: for interoperability)")
    p.add_argument("--seed", type=int, default=0, help="seed of the mesh surface sampling")
    p.add_argument("--drop-attributes", action="store_true",
                   help="compress geometry only: drop per-point colour and intensity, and accept losing per-point "
                        "data no mode keeps (normals, labels, LAS classification, extra XYZ/PTS columns), which "
                        "are otherwise refused in one line. Without it every mode keeps colour and intensity")
    p.add_argument("--device", default="cpu")
    jobs_flag(p)
    overwrite_flags(p, "outputs")
    server_flag(p)
    p.set_defaults(func=_cmd_compress)

    p = sub.add_parser("decompress", help="decompress .sq3d to a point cloud (.ply/.pcd/.las/.npz/.obj) or a radiance "
                       "field (.npz NeRF-MAE layout / .npy)")
    p.add_argument("input", help="IN.sq3d or a directory of them")
    p.add_argument("-o", "--output", required=True, help="OUT.ply|.pcd|.las|.npz|.obj|.npy (a directory when IN is one)")
    p.add_argument("--model", default=None, help="default: the registry version recorded in the file")
    p.add_argument("--pair", default=None, type=pair_arg, metavar="PAIR_FILE",
                   help="the pair file of a pair declared outside the pairs directories (the file names its pair)")
    p.add_argument("--format", default=None, choices=["ply", "pcd", "las", "npz", "obj", "npy"],
                   help="directory mode output format (default: ply for point clouds, npz for radiance fields)")
    p.add_argument("--drop-attributes", action="store_true",
                   help="write geometry only (default: the colour and intensity the file keeps; a format that "
                        "cannot hold them, such as intensity in .obj, is refused)")
    p.add_argument("--levels", type=int, default=None, metavar="K",
                   help="progressive decode of a file with an octree layer: only its first K levels (a coarser "
                        "cloud of cell centres; default: every level)")
    p.add_argument("--device", default="cpu")
    jobs_flag(p)
    overwrite_flags(p, "outputs")
    server_flag(p)
    p.set_defaults(func=_cmd_decompress)

    p = sub.add_parser("inspect", help="show a .sq3d file's header: sizes, codec, model identity")
    p.add_argument("input")
    p.add_argument("--json", action="store_true")
    server_flag(p)
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("serve", help="keep the codec warm: single-file compress/decompress/inspect commands "
                       "hand their work to this process instead of starting cold (~2 s of torch import)")
    p.add_argument("--pair", default=DEFAULT_PAIR, type=pair_arg, help="load this pair's models before the first request "
                   "(others load on first use)")
    p.add_argument("--idle-timeout", type=float, default=900.0, metavar="S",
                   help="exit after S seconds without a request (default 900)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("eval", help="codec evaluation vs the kind's classical baselines (Draco ladder + resampling "
                       "floor; raw-f16+zstd, quantise+zstd, prune+VQ): table, CSV, PNGs")
    p.add_argument("--pair", default=DEFAULT_PAIR, type=pair_arg, help=PAIR_HELP)
    p.add_argument("--model", default=None, help=model_help)
    p.add_argument("--split", default="test", action=_SplitAction, choices=["train", "val", "test"],
                   help="procedural corpus split (default test)")
    p.add_argument("--input", default=None, help="evaluate the files in this directory instead")
    p.add_argument("--limit", type=int, default=48, help="at most this many objects (default 48)")
    p.add_argument("--out", default=".state/eval", help="report directory (default .state/eval)")
    p.add_argument("--min-quality", type=_quality, default=DEFAULT_MIN_QUALITY_DB, metavar="DB")
    p.add_argument("--no-previews", action="store_true", help="skip the per-object before/after PNGs")
    effort_flag(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_eval, split_given=False)

    p = sub.add_parser("interpolate", help="decode shapes between two .sq3d codes (paper Fig. 8)")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--model", default=None, help="default: the registry version recorded in the files")
    p.add_argument("--pair", default=None, type=pair_arg, metavar="PAIR_FILE",
                   help="the pair file of a pair declared outside the pairs directories (the file names its pair)")
    p.add_argument("--format", default=None, choices=["ply", "npz", "obj", "npy"],
                   help="default: ply for point clouds, npz for radiance fields")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_interpolate)
