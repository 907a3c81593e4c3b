"""The cluster manifests in infra/ agree with the code, so they cannot rot silently: every YAML
parses, the Ray version and image are the ones the project pins and builds, RayJob entrypoints are
the "Scaling out" commands in docs/cluster.md and the jobs accept their flags, env var names are ones the code
(or the named third party) reads, and no manifest holds a secret."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MANIFESTS = sorted(INFRA.rglob("*.yaml"))
RAYJOBS = sorted((INFRA / "kuberay").glob("rayjob-*.yaml"))
# variables read by the parts we deploy rather than by our code
THIRD_PARTY_ENV = {
    "RAY_AUTH_MODE": "Ray (token authentication)", "RAY_AUTH_TOKEN_PATH": "Ray (token file)",
    "MLFLOW_BACKEND_STORE_URI": "mlflow server args in infra/mlflow/mlflow.yaml",
    "POSTGRES_USER": "postgres image", "POSTGRES_DB": "postgres image", "POSTGRES_PASSWORD": "postgres image",
    "PGDATA": "postgres image",
}
SECRET_NAMES = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY)")


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _walk(node, key=None):
    """Yield (key, value) for every mapping entry, recursively."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from _walk(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, key)


def _pinned(name: str) -> str:
    m = re.search(rf"^{name}==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert m, f"{name} not pinned in constraints.txt"
    return m.group(1)


def _images() -> dict[Path, set[str]]:
    out = {}
    for p in MANIFESTS:
        imgs = {v for d in _docs(p) for k, v in _walk(d) if k == "image" and isinstance(v, str)}
        if imgs:
            out[p] = imgs
    return out


def _code_text() -> str:
    return "\n".join(p.read_text() for d in ("platform", "jobs") for p in (ROOT / d).rglob("*.py"))


def test_every_manifest_parses_and_there_are_the_expected_ones():
    names = {p.relative_to(INFRA).as_posix() for p in MANIFESTS}
    assert {"kuberay/raycluster.yaml", "kuberay/rayjob-build-dataset.yaml", "kuberay/rayjob-train.yaml",
            "kuberay/rayjob-sweep.yaml", "cluster-launcher/aws.yaml", "mlflow/mlflow.yaml"} <= names
    for p in MANIFESTS:
        assert _docs(p), p


def test_ray_version_matches_the_pin_everywhere():
    version = _pinned("ray")
    assert ray.__version__ == version
    base = re.search(r"^FROM (\S+)", (INFRA / "Dockerfile").read_text(), re.M).group(1)
    assert base == f"rayproject/ray:{version}-py311-gpu", base
    for p in [INFRA / "kuberay" / "raycluster.yaml", *RAYJOBS]:
        for d in _docs(p):
            spec = d["spec"].get("rayClusterSpec", d["spec"])
            assert spec["rayVersion"] == version, p
            assert spec["authOptions"]["mode"] == "token", p  # Ray >= 2.59: token auth on


def test_one_project_image_tagged_with_the_ray_version():
    version = _pinned("ray")
    ray_images = {i for p, imgs in _images().items() if "mlflow" not in p.parts for i in imgs if "postgres" not in i}
    assert len(ray_images) == 1, ray_images  # head, workers, jobs and the launcher run the same image
    (image,) = ray_images
    assert image.endswith(f":ray{version}-gpu"), image
    assert image in (INFRA / "Dockerfile").read_text()  # the build command in the Dockerfile makes it
    mlflow_image = next(iter(_images()[INFRA / "mlflow" / "mlflow.yaml"]))
    assert mlflow_image.endswith(f":{_pinned('mlflow')}")
    assert f"mlflow=={_pinned('mlflow')}" in (INFRA / "mlflow" / "Dockerfile").read_text()


def test_gpu_worker_groups_request_gpus_and_tolerate_the_taint():
    for p in [INFRA / "kuberay" / "raycluster.yaml", *RAYJOBS]:
        d = _docs(p)[0]
        spec = d["spec"].get("rayClusterSpec", d["spec"])
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert "nvidia.com/gpu" not in head["resources"].get("limits", {}), p  # a CPU head
        groups = spec["workerGroupSpecs"]
        assert groups, p
        for g in groups:
            pod = g["template"]["spec"]
            res = pod["containers"][0]["resources"]
            assert int(res["limits"]["nvidia.com/gpu"]) >= 1 and res["requests"]["nvidia.com/gpu"] == \
                res["limits"]["nvidia.com/gpu"], p
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"], p
    launcher = _docs(INFRA / "cluster-launcher" / "aws.yaml")[0]
    gpu_types = [t for t in launcher["available_node_types"].values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu_types and launcher["docker"]["image"] in {i for s in _images().values() for i in s}


def _readme_commands() -> list[str]:
    text = (ROOT / "docs" / "cluster.md").read_text()
    section = text.split("## Scaling out", 1)[1].split("\n## ", 1)[0]
    return [line.strip().split(" -- ", 1)[1] for line in section.splitlines()
            if line.strip().startswith("ray job submit") and " -- " in line]


def _job_parser(script: Path):
    spec = importlib.util.spec_from_file_location(f"_job_{script.stem}", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_parser()


@pytest.mark.parametrize("path", RAYJOBS, ids=lambda p: p.name)
def test_rayjob_entrypoint_is_a_readme_command_the_job_accepts(path):
    (doc,) = _docs(path)
    entry = doc["spec"]["entrypoint"]
    assert entry in _readme_commands(), f"{path.name}: entrypoint is not one of docs/cluster.md's Scaling out commands"
    argv = shlex.split(entry)
    assert argv[0] == "python" and argv[1].startswith("jobs/")
    script = ROOT / argv[1]
    assert script.is_file(), script
    args = _job_parser(script).parse_args(argv[2:])  # SystemExit (test failure) on an unknown flag
    assert args.pair == "pointnet_lion"
    # the working dir the RayJob ships is where the image puts the repo
    assert "working_dir: /home/ray/squeeze3d" in doc["spec"]["runtimeEnvYAML"]
    assert "WORKDIR /home/ray/squeeze3d" in (INFRA / "Dockerfile").read_text()


def test_readme_commands_each_have_a_rayjob():
    entries = {_docs(p)[0]["spec"]["entrypoint"] for p in RAYJOBS}
    assert set(_readme_commands()) == entries


def test_all_s3_uris_use_one_bucket():
    uris = set()
    for p in [*MANIFESTS, ROOT / "docs" / "cluster.md"]:
        text = p.read_text()
        if p.name == "cluster.md":
            text = text.split("## Scaling out", 1)[1].split("\n## ", 1)[0]
        uris |= set(re.findall(r"s3://([a-z0-9.-]+)/", text))
    assert uris == {"my-bucket"}, uris


def _env_entries():
    for p in MANIFESTS:
        for d in _docs(p):
            for k, v in _walk(d):
                if k == "env" and isinstance(v, list):
                    for e in v:
                        yield p, e
    launcher = (INFRA / "cluster-launcher" / "aws.yaml").read_text()
    for name, value in re.findall(r"--env (\w+)=(\S+)", launcher):
        yield INFRA / "cluster-launcher" / "aws.yaml", {"name": name, "value": value}


def test_env_names_are_read_by_the_code_and_secrets_come_from_secrets():
    code = _code_text()
    seen = set()
    for path, e in _env_entries():
        name = e["name"]
        seen.add(name)
        assert name in THIRD_PARTY_ENV or re.search(rf"['\"]{name}['\"]", code), \
            f"{path.name}: {name} is read neither by squeeze3d nor by a known third party"
        if SECRET_NAMES.search(name) and name not in ("RAY_AUTH_TOKEN_PATH",):
            assert "value" not in e and "secretKeyRef" in e.get("valueFrom", {}), f"{path.name}: {name} inline"
    assert {"MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} <= seen
    # the tracking URI the Ray pods use is the Service the MLflow manifest defines
    svc = next(d for d in _docs(INFRA / "mlflow" / "mlflow.yaml") if d["kind"] == "Service")
    uri = f"http://{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local:{svc['spec']['ports'][0]['port']}"
    uris = {e["value"] for _, e in _env_entries() if e["name"] == "MLFLOW_TRACKING_URI" and "svc" in e["value"]}
    assert uris == {uri}


def test_no_literal_secrets_anywhere_in_infra():
    pattern = re.compile(r"(AKIA[0-9A-Z]{16}|aws_secret_access_key\s*[:=]|-----BEGIN|postgresql://\w+:[^@$]+@(?!postgres:5432/mlflow$))")
    for p in INFRA.rglob("*"):
        if p.is_file():
            for line in p.read_text().splitlines():
                if "PASSWORD@" in line:  # the documented placeholder in a comment
                    continue
                assert not pattern.search(line), f"{p}: {line.strip()}"
