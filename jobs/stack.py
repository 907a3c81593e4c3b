"""The local production-shaped stack: Ray head + worker, mlflow server, S3 (moto), on loopback.

    python jobs/stack.py up       # idempotent; prints where everything is (env file: .state/stack/stack.env)
    python jobs/stack.py status   # each process and its health check
    python jobs/stack.py down     # stops exactly what `up` started; a no-op when down
"""

import argparse
import sys
from pathlib import Path

from squeeze3d import stack


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["up", "down", "status"])
    ap.add_argument("--dir", default=str(stack.DEFAULT_DIR), help="the stack's folder (default .state/stack)")
    ap.add_argument("--bucket", default=stack.StackConfig.bucket, help="S3 bucket to create")
    ap.add_argument("--worker-nodes", type=int, default=stack.StackConfig.worker_nodes,
                    help="Ray worker nodes besides the head (1 CPU each)")
    a = ap.parse_args()
    if a.action == "up":
        stack.up(stack.StackConfig(state_dir=Path(a.dir), bucket=a.bucket, worker_nodes=a.worker_nodes))
        s = stack.status(Path(a.dir))
        print(stack.format_status(s))
        return 0 if s["healthy"] else 1
    if a.action == "down":
        stack.down(Path(a.dir))
        return 0
    s = stack.status(Path(a.dir))
    print(stack.format_status(s))
    return 0 if s["healthy"] or not s["up"] else 1


if __name__ == "__main__":
    sys.exit(main())
