"""The real-model adapters at the PUBLISHED sizes, on the meta device (no memory, no download):
every key and shape against the committed manifests (tests/data/layouts/, derived as
tests/data/layouts/make_manifests.py describes), and the parameter counts against the published figures.

- Shap-E (openai/shap-e, diffusers layout): the ``shap_e_diffusers`` adapter loads each part from its
  folder's config.json (``ShapEPipeline.from_pretrained``); here the parts are built from the published
  configs the same way. Published figure: the text-conditional prior is ``text300M`` (openai/shap-e
  model-card.md, "Model Versions"): 300 M, a rounded figure (the prior has 315.7 M).
- MeshAnything 350m's point encoder (buaacyw/MeshAnything): the ``meshanything_350m`` adapter reads the
  architecture from the checkpoint's tensor shapes (``config_from_state``) and checks every key
  (``check_state_dict``); here the "checkpoint" is meta tensors of the manifest's shapes. No published
  parameter count exists for this z_E path (the "350m" is the OPT-350m decoder's size), so the count is
  checked against the manifest's, which is enumerated independently of our model code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

LAYOUTS = Path(__file__).resolve().parents[2] / "data" / "layouts"
TEXT300M = 300e6  # openai/shap-e model-card.md: "text300M - the text-conditional latent diffusion model"


def _manifest(name: str) -> dict:
    return json.loads((LAYOUTS / f"{name}.json").read_text())


def _layout(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def _diff(got: dict, want: dict) -> str:
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    bad = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    return f"missing {missing[:5]}, unexpected {extra[:5]}, mis-shaped {[(k, got[k], want[k]) for k in bad[:5]]}"


def _published_shap_e_folder(root: Path) -> Path:
    """The config files of the openai/shap-e folder (no weights): what the adapter reads before loading."""
    from diffusers import PriorTransformer
    from diffusers.pipelines.shap_e.renderer import ShapERenderer

    for part, cls, name in (("prior", PriorTransformer, "shap_e_prior"),
                            ("shap_e_renderer", ShapERenderer, "shap_e_renderer")):
        (root / part).mkdir(parents=True)
        cfg = {"_class_name": cls.__name__, **_manifest(name)["config"]}
        (root / part / "config.json").write_text(json.dumps(cfg))
    return root


@pytest.mark.parametrize("part, cls_path, name", [
    ("prior", "diffusers:PriorTransformer", "shap_e_prior"),
    ("shap_e_renderer", "diffusers.pipelines.shap_e.renderer:ShapERenderer", "shap_e_renderer"),
])
def test_shap_e_published_layout_on_meta(tmp_path, part, cls_path, name):
    import importlib

    module, _, cls_name = cls_path.partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    folder = _published_shap_e_folder(tmp_path / "shap-e")
    config = cls.load_config(folder / part)  # the loader the pipeline uses
    with torch.device("meta"):
        model = cls.from_config(config)
    want = _manifest(name)
    got = _layout(model)
    assert got == want["keys"], _diff(got, want["keys"])
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == want["num_parameters"]


def test_shap_e_prior_parameter_count_is_the_published_300m_and_z_g_is_1024x1024(tmp_path):
    from squeeze3d.zoo.shap_e.adapter import shap_e_diffusers_generator

    n = _manifest("shap_e_prior")["num_parameters"]
    assert abs(n - TEXT300M) / TEXT300M < 0.06, n  # "300M" is rounded: 315.7 M
    folder = _published_shap_e_folder(tmp_path / "shap-e")
    assert shap_e_diffusers_generator.latent_shape(str(folder)) == (1024, 1024)


def test_meshanything_350m_point_encoder_published_layout_on_meta():
    from squeeze3d.zoo.meshanything.checkpoint import PREFIXES, config_from_state, to_mini_keys
    from squeeze3d.zoo.meshanything.model import MeshAnythingMini, check_state_dict

    want = _manifest("meshanything_350m_encoder")
    published = {k: torch.empty(shape, device="meta") for k, shape in want["keys"].items()}
    # other parts of MeshAnything_350m.pth that the z_E path does not read: skipped by the adapter
    published["transformer.model.decoder.embed_tokens.weight"] = torch.empty(4099, 1024, device="meta")
    state, skipped = to_mini_keys(published)
    assert skipped == 1
    cfg = config_from_state(state, heads=want["config"]["heads"])
    assert (cfg.num_latents, cfg.width, cfg.num_encoder_layers, cfg.num_decoder_layers, cfg.embed_dim, cfg.num_freqs,
            cfg.cond_dim, cfg.qkv_bias) == (256, 768, 8, 16, 64, 8, 1024, False)
    with torch.device("meta"):
        model = MeshAnythingMini(cfg)
    check_state_dict(state, model, "published layout")  # the adapter's strict key check
    back = {v: k for k, v in PREFIXES.items()}
    got = {}
    for k, shape in _layout(model).items():
        ours = next(p for p in back if k.startswith(p))
        got[back[ours] + k[len(ours):]] = shape
    assert got == want["keys"], _diff(got, want["keys"])
    assert sum(p.numel() for p in model.parameters()) == want["num_parameters"]
    assert cfg.z_shape == (257, 1024)  # z_E of the real pair: 257 tokens x OPT-350m's hidden size


def test_manifest_counts_are_the_sums_of_their_shapes():
    import math

    for f in LAYOUTS.glob("*.json"):
        m = json.loads(f.read_text())
        assert m["source"] and m["config"]
        total = sum(math.prod(s) for k, s in m["keys"].items() if k not in m["buffers"])  # e.g. marching-cubes tables
        assert total == m["num_parameters"], f.name


REAL = Path(__file__).resolve().parents[3] / "datasets" / "pairs" / "real"


def test_example_real_pair_files_parse_and_name_their_missing_variable(monkeypatch, tmp_path):
    from squeeze3d.pairs import UnknownPairError, declared

    monkeypatch.delenv("SQUEEZE3D_CHECKPOINTS", raising=False)
    files = sorted(f for f in REAL.glob("*.yaml") if not f.name.endswith(".space.yaml"))
    assert {f.stem for f in files} >= {"shap_e_meshanything", "pointnet_lion_official", "nerfmae_swin3d"}
    for f in files:
        with pytest.raises(UnknownPairError, match=r"uses \$\{SQUEEZE3D_CHECKPOINTS\}, which is not set"):
            declared.read_declaration(f)
    monkeypatch.setenv("SQUEEZE3D_CHECKPOINTS", str(tmp_path))
    for f in files:
        d = declared.read_declaration(f)
        assert d.name == f.stem and d.encoder.checkpoint.startswith(str(tmp_path))


def test_shap_e_meshanything_example_with_tiny_weights_in_the_official_layout(monkeypatch, tmp_path):
    """The example pair file, its checkpoints replaced by tiny random weights written in the published
    file layouts (a ShapEPipeline folder; MeshAnything_350m.pth's key names): shapes come from the
    adapters' config readers, E and G load, G samples a mesh from a prompt and E encodes it."""
    import importlib.util

    import yaml

    from squeeze3d.pairs import declared, get_pair
    from squeeze3d.zoo.meshanything.checkpoint import export_meshanything_layout
    from squeeze3d.zoo.meshanything.model import MeshAnythingConfig, MeshAnythingMini

    spec = importlib.util.spec_from_file_location("t_shap_e", Path(__file__).parent / "shap_e" / "test_shap_e.py")
    t_shap_e = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(t_shap_e)
    root = tmp_path / "ckpts"
    t_shap_e._tiny_pipeline_folder(root).rename(root / "shap-e")
    torch.manual_seed(1)
    (root / "MeshAnything").mkdir()
    tiny = MeshAnythingMini(MeshAnythingConfig(num_latents=8, width=16, heads=2, num_encoder_layers=1,
                                               num_decoder_layers=1, embed_dim=4, num_freqs=4, color_channels=0,
                                               cond_dim=24))
    export_meshanything_layout(tiny, root / "MeshAnything" / "MeshAnything_350m.pth")
    monkeypatch.setenv("SQUEEZE3D_CHECKPOINTS", str(root))
    monkeypatch.setattr(declared, "_FILES", {})
    monkeypatch.setenv(declared.FILES_ENV, "")
    doc = yaml.safe_load((REAL / "shap_e_meshanything.yaml").read_text())
    doc["encoder"]["options"] = {"heads": 2}  # the tiny model's; CPU-sized sampling below
    doc["generator"]["options"] = {"num_points": 128, "grid_size": 16, "steps": 2, "guidance_scale": 3.0}
    doc["num_points"], doc["tuning"] = 128, str(REAL / doc["tuning"])
    f = tmp_path / "pair.yaml"
    f.write_text(yaml.safe_dump(doc))
    pair = get_pair(str(f))
    assert pair.z_e_shape == (9, 24) and pair.z_g_shape == (32, 16)
    assert pair.condition_problem("") == "empty"
    z_g, assets = pair.build_generator("cpu").sample([("a red chair", 3)])
    assert z_g.shape == (1, 32, 16) and assets.shape == (1, 128, 9)
    assert pair.build_encoder("cpu").encode(assets).shape == (1, 9, 24)
