"""Recipe of the shipped pointnet_lion model's code prior (zoo/weights/pointnet_lion/mapping/code_prior.safetensors).

    make corpus                               # the real-object corpus (once)
    python jobs/fit_code_prior.py             # ~15 min on 2 cores (the refinement of each code)

Fits ``squeeze3d.codec.code_prior`` on the codes the codec stores (F_E's code refined at the default
effort) for train-split objects only: real (Sweet Home 3D + FlightGear) and procedural. The prior is
bound to the model's weights hash; refitting it changes how that model's entropy-coded files decode,
so an existing prior is only replaced with --force.
"""

import argparse
import sys
import time
from pathlib import Path

from fit_octree_tables import procedural_clouds, real_clouds

from squeeze3d.codec import DEFAULT_EFFORT
from squeeze3d.codec.code_prior import FILE_NAME, fit_for_codec
from squeeze3d.codec.compressor import PREFIX_BITS, get_codec
from squeeze3d.errors import UserError, run_main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="pointnet_lion")
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the pair's shipped model)")
    ap.add_argument("--real", type=int, default=300, help="real train-split objects")
    ap.add_argument("--procedural", type=int, default=100, help="procedural train-split objects")
    ap.add_argument("--effort", type=int, default=DEFAULT_EFFORT, help="refinement steps (the codec's default)")
    ap.add_argument("--force", action="store_true", help="replace an existing prior (its files stop decoding)")
    a = ap.parse_args()
    codec = get_codec(a.pair, a.model)
    if (Path(codec.resolved.path) / FILE_NAME).exists() and not a.force:
        raise UserError(f"{codec.resolved.path}/{FILE_NAME} exists; files coded with it decode only with it "
                        "(pass --force to replace it)")
    if a.real + a.procedural < 1:
        raise UserError("--real and --procedural select no objects")
    t = time.perf_counter()
    clouds = [*real_clouds(a.real), *procedural_clouds(a.procedural)]
    path = fit_for_codec(codec, clouds, a.effort, PREFIX_BITS,
                         meta={"recipe": "jobs/fit_code_prior.py", "real": a.real, "procedural": a.procedural})
    print(f"wrote {path} from {len(clouds)} train objects ({time.perf_counter() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "fit_code_prior"))
