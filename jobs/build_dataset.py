"""Build the synthetic (z_E, z_G) training set of a pair: a thin shell over
``squeeze3d.synth.build.build_dataset``.

Laptop (embedded Ray):   python jobs/build_dataset.py --pair debug --num-samples 2000 --output out/ds
Text-conditioned pair:   python jobs/build_dataset.py --pair debug_text --prompts .state/prompts \
                             --samples-per-prompt 4          # N defaults to n_prompts * k
Cluster (Ray Jobs):      ray job submit --working-dir . -- python jobs/build_dataset.py --pair ... \
                             --output s3://bucket/prefix
Unset options come from the pair's builder defaults: ./datasets/<pair>.yaml if present, else the
file shipped in the package (platform/squeeze3d/data/datasets/<pair>.yaml). Re-running the same command finishes a killed build.
Exit status: 0 done, 2 bad arguments or unusable output (nothing written), 1 anything else.
"""

from __future__ import annotations

import argparse
import sys

try:
    import squeeze3d  # noqa: F401
except ImportError:  # workers need it too, so a sys.path tweak here would only move the failure
    sys.exit("build_dataset: squeeze3d is not importable; install it on every node (pip install .) or "
             'submit with --runtime-env-json \'{"py_modules": ["platform/squeeze3d"]}\'')


# after the import check above
from squeeze3d.config_flags import add_dataclass_flags, flag_overrides  # noqa: E402
from squeeze3d.pairs.declared import PAIR_HELP, pair_arg  # noqa: E402
from squeeze3d.synth.build_config import BuildConfig  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    """The job's flags (also used by tests/unit/test_infra_manifests.py to check RayJob entrypoints)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    # one flag per BuildConfig field (a new field is a new flag), help from the field's docstring
    add_dataclass_flags(p, BuildConfig, custom={"pair": {"type": pair_arg, "help": PAIR_HELP}})
    p.add_argument("--overwrite", action="store_true", help="replace an output holding a different build")
    p.add_argument("--address", default=None, help="Ray address (default: the job's cluster, else embedded)")
    p.add_argument("--datasets-dir", default=None, help="where <pair>.yaml defaults live (default: "
                   "$SQUEEZE3D_DATASETS_DIR, ./datasets, then the package's squeeze3d/data/datasets)")
    return p


def main(argv=None) -> int:
    a = parse_args(argv)
    from squeeze3d.synth.build import build_dataset

    s = build_dataset(**flag_overrides(a, BuildConfig), overwrite=a.overwrite, datasets_dir=a.datasets_dir,
                      ray_address=a.address)
    print(f"dataset:  {s.output}\nmanifest: {s.manifest}\nrows: {s.rows}  shards: {s.shards} "
          f"({s.shards_written} written, {s.shards_reused} reused)  bytes: {s.bytes}  "
          f"seconds: {s.seconds:.1f}  rows/s: {s.rows_per_s:.0f}")
    if s.rejected_conditions:
        print(f"prompts left out (the generator cannot take them): {s.rejected_conditions['count']} "
              f"{s.rejected_conditions['reasons']}; listed in the manifest's condition.rejected_prompts")
    print(f"check it: squeeze3d dataset validate {s.output}")
    return 0


if __name__ == "__main__":
    from squeeze3d.errors import run_main

    sys.exit(run_main(main, "build_dataset"))
