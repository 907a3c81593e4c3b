"""Mini Shap-E on diffusers' own classes: marching-cubes tables, the decode frame, training path,
save/load, the generator contract, and the real ``ShapEPipeline`` folder adapter (random weights at
diffusers' tiny test sizes, written by the test)."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import torch

from squeeze3d.zoo.shap_e import marching_cubes
from squeeze3d.zoo.shap_e import model as shap_e

TINY = dict(d_hidden=8, d_latent=16, prior_layers=1, prior_heads=2, prior_head_dim=8, grid_size=20,
            inference_steps=2)


def _sphere_field(g: int, r: float, centre=(0.2, 0.0, 0.0)):
    x = torch.linspace(-1, 1, g)
    X, Y, Z = torch.meshgrid(x, x, x, indexing="ij")
    return r - ((X - centre[0]) ** 2 + (Y - centre[1]) ** 2 + (Z - centre[2]) ** 2).sqrt()


def test_tables_fit_the_buffers_and_complements_mirror():
    cases, masks = marching_cubes.mc_tables()
    assert cases.shape == (256, 5, 3) and masks.shape == (256, 5)
    assert masks[0].sum() == 0 and masks[255].sum() == 0
    assert masks.sum(1).max() <= 5
    for c in (1, 3, 7, 15, 24, 60):  # no ambiguous faces: the complement has the same triangles, flipped
        assert masks[c].sum() == masks[255 - c].sum()


def test_sphere_decodes_watertight_with_outward_normals():
    from diffusers.pipelines.shap_e.renderer import MeshDecoder

    dec = MeshDecoder()
    marching_cubes.fill_mesh_decoder(dec)
    g = 30
    full = torch.full((g,) * 3, -1.0)
    full[1:-1, 1:-1, 1:-1] = _sphere_field(g - 2, 0.5)[:, :, :]
    out = dec(full, torch.tensor([-1.0] * 3), torch.tensor([2.0] * 3))
    v, f = out.verts.numpy(), out.faces.numpy()
    edges = collections.Counter()
    for t in f:
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            edges[(min(a, b), max(a, b))] += 1
    assert set(edges.values()) == {2}  # closed 2-manifold
    tri = v[f]
    volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
    assert volume > 0  # outward winding


def test_field_values_match_the_renderer_forward_and_have_gradients():
    cfg = shap_e.ShapEConfig(**TINY)
    m = shap_e.ShapEModule(cfg)
    lat = torch.randn(3, *cfg.z_shape, requires_grad=True)
    pts = torch.rand(3, 64, 3) * 2 - 1
    sdf, rgb = shap_e.field_values(m.renderer, lat, pts)
    (sdf.sum() + rgb.sum()).backward()
    assert sdf.shape == (3, 64) and rgb.shape == (3, 64, 3) and lat.grad.abs().sum() > 0
    with torch.no_grad():  # what decode_to_mesh does: copy the projected weights into the MLP
        proj = m.renderer.params_proj(lat[1:2].detach())
        for name, p in m.renderer.mlp.state_dict().items():
            if f"nerstf.{name}" in proj:
                p.copy_(proj[f"nerstf.{name}"][0])
        ref = m.renderer.mlp(position=pts[1:2], direction=None, ts=None, nerf_level="fine", rendering_mode="stf")
    torch.testing.assert_close(ref.signed_distance[0, :, 0], torch.tanh(sdf[1].detach()), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ref.channels[0], rgb[1].detach(), atol=1e-5, rtol=1e-4)


def test_fitted_sphere_decodes_in_the_query_frame_with_its_colour():
    """Fit one latent + the renderer to a coloured sphere; the decoded mesh must sit where the SDF
    was fitted (radius 0.5 about its centre, not shrunk by decode_to_mesh's padding) in its colour."""
    torch.manual_seed(0)
    cfg = shap_e.ShapEConfig(d_hidden=16, d_latent=16, grid_size=24)
    m = shap_e.ShapEModule(cfg)
    lat = torch.nn.Parameter(torch.randn(1, *cfg.z_shape) * 0.1)
    opt = torch.optim.Adam([*m.renderer.parameters(), lat], lr=3e-3)
    centre = torch.tensor([0.2, 0.0, 0.0])
    colour = torch.tensor([0.8, 0.2, 0.1])
    for _ in range(250):
        # half the queries near the surface, as G's own training draws them (uniform-only queries
        # let the fit settle on "everything outside": the sphere is 6.5 % of the cube)
        shell = torch.nn.functional.normalize(torch.randn(1, 256, 3), dim=-1) * 0.5 + centre
        pts = torch.cat([torch.rand(1, 256, 3) * 2 - 1, shell + 0.05 * torch.randn(1, 256, 3)], 1)
        d = 0.5 - (pts - centre).norm(dim=-1)  # > 0 inside
        sdf, rgb = shap_e.field_values(m.renderer, lat, pts)
        near = (d.abs() < 0.1).float()[..., None]
        loss = (sdf - (d / 0.1).clamp(-1, 1)).abs().mean() + ((rgb - colour).abs() * near).sum() / near.sum().clamp_min(1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    mesh = shap_e.decode_mesh(m.renderer.eval(), lat.detach(), cfg.grid_size)
    radius = np.linalg.norm(mesh.vertices - centre.numpy(), axis=1)
    assert mesh.num_faces > 100
    assert abs(np.median(radius) - 0.5) < 0.03, np.median(radius)
    assert np.abs(np.median(mesh.colors, 0) - colour.numpy()).max() < 0.1


def test_save_load_round_trip_keeps_weights_and_tables(tmp_path):
    cfg = shap_e.ShapEConfig(**TINY, latent_scale=2.5)
    m = shap_e.ShapEModule(cfg)
    shap_e.save(m, tmp_path / "g")
    assert json.loads((tmp_path / "g" / "model_index.json").read_text())["prior"] == ["diffusers", "PriorTransformer"]
    assert not list((tmp_path / "g").rglob("*.bin")) and not list((tmp_path / "g").rglob("*.pt"))
    back = shap_e.load(tmp_path / "g")
    assert back.cfg == cfg
    for k, v in m.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    assert back.renderer.mesh_decoder.masks.any()


def test_load_names_a_bad_folder(tmp_path):
    from squeeze3d.errors import UserError

    with pytest.raises(UserError, match="not a mini Shap-E folder"):
        shap_e.load(tmp_path)


def _planted_text_means(cfg, classes=6, per_class=40, spread=0.3, seed=0):
    """Latents ``x = mean_k + noise`` with one random sentence embedding per class ``k``."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(classes, cfg.text_dim, generator=g)
    means = torch.randn(classes, *cfg.z_shape, generator=g)
    lab = torch.arange(classes).repeat(per_class)
    x = means[lab] + spread * torch.randn(len(lab), *cfg.z_shape, generator=g)
    return emb, means, emb[lab], x


def test_conditional_mean_recovers_planted_text_means_and_round_trips(tmp_path):
    cfg = shap_e.ShapEConfig(**TINY, prior_mean_rank=6)
    emb, means, cond, x = _planted_text_means(cfg)
    m = shap_e.ShapEModule(cfg)
    fit = m.prior_mean.fit(cond, x)
    assert fit["explained"] > 0.85  # the class means carry 1 / (1 + 0.3²) ≈ 92 % of the variance
    with torch.no_grad():
        err = (m.prior_mean(emb) - means).pow(2).mean() / means.pow(2).mean()
    assert err < 0.05
    shap_e.save(m, tmp_path / "g")
    assert (tmp_path / "g" / "prior_mean" / "model.safetensors").is_file()
    back = shap_e.load(tmp_path / "g")
    assert back.cfg.prior_mean_rank == 6
    for k, v in m.prior_mean.state_dict().items():
        assert torch.equal(v, back.prior_mean.state_dict()[k]), k


def test_load_names_a_missing_conditional_mean(tmp_path):
    from squeeze3d.errors import UserError

    shap_e.save(shap_e.ShapEModule(shap_e.ShapEConfig(**TINY, prior_mean_rank=3)), tmp_path / "g")
    (tmp_path / "g" / "prior_mean" / "model.safetensors").unlink()
    with pytest.raises(UserError, match="prior_mean_rank 3 but .*model.safetensors is missing"):
        shap_e.load(tmp_path / "g")


class _HashEmbedder:
    """Deterministic stand-in for the 384-d sentence embedder (the real one is tested in test_prompts_dedup)."""

    def encode(self, texts):
        out = []
        for t in texts:
            g = np.random.default_rng(abs(hash(t)) % (2**32))
            out.append(g.normal(size=384).astype(np.float32))
        return np.stack(out)


def test_generator_samples_are_per_prompt_and_seed(tmp_path):
    cfg = shap_e.ShapEConfig(**TINY)
    gen = shap_e.ShapEGenerator(module=shap_e.ShapEModule(cfg), embedder=_HashEmbedder(), num_points=128)
    h = gen.weights_hash()
    conds = [("a red chair", 1), ("a red chair", 2), ("a gold vase", 1)]
    z, assets = gen.sample(conds)
    assert z.shape == (3, *cfg.z_shape) and assets.shape == (3, 128, 9)
    z1, a1 = gen.sample(conds[1:2])
    assert torch.equal(z1[0], z[1]) and torch.equal(a1[0], assets[1])  # alone == in a batch
    assert not torch.equal(z[0], z[1]) and not torch.equal(z[0], z[2])
    meshes = gen.decode_meshes(z[:1])
    assert len(meshes) == 1
    assert gen.weights_hash() == h  # decode_to_mesh rewrote the MLP in place; the identity is the checkpoint's
    with pytest.raises(TypeError, match="text-conditioned"):
        gen.sample([3])


def test_generator_adds_the_guided_text_mean_to_the_prior_sample():
    torch.manual_seed(0)  # random weights: seeded, so the float32 tolerance below does not depend on test order
    cfg = shap_e.ShapEConfig(**TINY, prior_mean_rank=2, latent_scale=0.5, mean_guidance=2.0)
    with_mean = shap_e.ShapEModule(cfg)
    torch.nn.init.normal_(with_mean.prior_mean.up.weight)
    torch.nn.init.normal_(with_mean.prior_mean.down.weight)
    plain = shap_e.ShapEModule(shap_e.ShapEConfig(**TINY, latent_scale=0.5), renderer=with_mean.renderer,
                               prior=with_mean.prior)
    emb = _HashEmbedder()
    conds = [("a red chair", 1), ("a gold vase", 1)]
    z_mean, _ = shap_e.ShapEGenerator(module=with_mean, embedder=emb, num_points=64).sample(conds)
    z_plain, _ = shap_e.ShapEGenerator(module=plain, embedder=emb, num_points=64).sample(conds)
    with torch.no_grad():
        e = shap_e.text_embeddings(emb, [p for p, _ in conds])
        m0, mc = with_mean.prior_mean(torch.zeros_like(e)), with_mean.prior_mean(e)
        shift = (m0 + 2.0 * (mc - m0)) * 0.5  # guidance 2 on the mean, times latent_scale
    assert shift.abs().mean() > 0.1
    torch.testing.assert_close(z_mean - z_plain, shift, rtol=1e-4, atol=1e-5)


def test_generator_identity_covers_its_sampling_settings():
    from dataclasses import replace

    m = shap_e.ShapEModule(shap_e.ShapEConfig(**TINY))
    a = shap_e.ShapEGenerator(module=m, embedder=_HashEmbedder()).weights_hash()
    m2 = shap_e.ShapEModule(replace(m.cfg, mean_guidance=2.0), renderer=m.renderer, prior=m.prior)
    b = shap_e.ShapEGenerator(module=m2, embedder=_HashEmbedder()).weights_hash()
    assert len(a) == len(b) == 64 and a != b


def _tiny_pipeline_folder(path):
    """A ShapEPipeline folder at diffusers' own tiny test sizes, random weights."""
    from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEPipeline
    from diffusers.pipelines.shap_e.renderer import ShapERenderer
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(0)
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=16, embedding_dim=16, num_embeddings=32,
                             embedding_proj_dim=16, time_embed_dim=64, num_layers=1, clip_embed_dim=32,
                             additional_embeddings=0, time_embed_act_fn="gelu", norm_in_type="layer",
                             encoder_hid_proj_type=None, added_emb_type=None)
    renderer = ShapERenderer(param_shapes=((8, 93), (8, 8), (8, 8), (8, 8)), d_latent=16, d_hidden=8,
                             n_output=12, background=(0.1, 0.1, 0.1))
    text = CLIPTextModelWithProjection(CLIPTextConfig(bos_token_id=0, eos_token_id=2, hidden_size=16, projection_dim=16,
                                                      intermediate_size=37, layer_norm_eps=1e-5, num_attention_heads=4,
                                                      num_hidden_layers=2, pad_token_id=1, vocab_size=1000))
    # a byte-level BPE vocabulary with no merges: every character is a token
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]  # GPT-2's byte -> unicode map
    extra = iter(range(256, 512))
    chars = [chr(b) if b in printable else chr(next(extra)) for b in range(256)]
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    tok_dir = path / "_tok"
    tok_dir.mkdir(parents=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=32)
    sched = HeunDiscreteScheduler(beta_schedule="exp", num_train_timesteps=1024, prediction_type="sample",
                                  use_karras_sigmas=True, clip_sample=True, clip_sample_range=1.0)
    pipe = ShapEPipeline(prior=prior, text_encoder=text, tokenizer=tokenizer, scheduler=sched, shap_e_renderer=renderer)
    pipe.save_pretrained(path / "shap_e")
    return path / "shap_e"


def test_real_shap_e_pipeline_folder_samples_latents_and_decodes(tmp_path):
    from squeeze3d.zoo.shap_e.pipeline import ShapEPipelineGenerator

    folder = _tiny_pipeline_folder(tmp_path)
    for part in ("model_index.json", "prior", "shap_e_renderer", "text_encoder", "tokenizer"):
        assert (folder / part).exists()
    gen = ShapEPipelineGenerator(folder, num_points=64, grid_size=16, steps=2)
    z, assets = gen.sample([("a chair", 3), ("a chair", 4)])
    assert z.shape == (2, 32, 16) and assets.shape == (2, 64, 9)
    z_alone, _ = gen.sample([("a chair", 4)])
    assert torch.equal(z_alone[0], z[1])
    assert gen.pipe.shap_e_renderer.mesh_decoder.masks.any()  # tables derived for a table-less checkpoint


def test_pipeline_adapter_names_missing_parts(tmp_path):
    from squeeze3d.errors import UserError
    from squeeze3d.zoo.shap_e.pipeline import load_pipeline

    (tmp_path / "model_index.json").write_text("{}")
    (tmp_path / "prior").mkdir()
    with pytest.raises(UserError, match="lacks shap_e_renderer/, text_encoder/, tokenizer/, scheduler/"):
        load_pipeline(tmp_path)
