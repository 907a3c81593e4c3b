"""A job's local Ray instance stays findable from its own actors while other Ray instances run on
the machine (Ray Train's PlacementGroupCleaner uses the state API with ``address="auto"``)."""

import subprocess
import sys

PROBE = """
import ray
from squeeze3d.train.ray_train import connect_ray
connect_ray()
mine = ray.get_runtime_context().gcs_address

@ray.remote
def probe():
    import os
    from ray.util.state import list_nodes
    return os.environ.get("RAY_ADDRESS"), len(list_nodes())

addr, nodes = ray.get(probe.remote())
assert addr == mine, (addr, mine)
assert nodes == 1
print("PROBE-OK", mine)
"""


def test_state_api_from_actors_with_two_ray_instances(ray_session):
    # ray_session is one instance (this process); the probe starts a second one in a subprocess
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=240,
                         env={k: v for k, v in __import__("os").environ.items() if k != "RAY_ADDRESS"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "PROBE-OK" in out.stdout
