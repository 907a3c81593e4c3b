"""LION-style generator: diffusion maths, sampling determinism, canonical order, z_G layout, the
official checkpoint reader, generative metrics, and the shipped weights."""

import pytest
import torch

from squeeze3d.metrics.generative import generative_metrics, metrics_from_distances, pairwise_chamfer
from squeeze3d.metrics.pointcloud import chamfer
from squeeze3d.zoo.lion import model as lion
from squeeze3d.zoo.lion.checkpoint import (
    LionCheckpointError,
    export_official_layout,
    read_lion_checkpoint,
)

TINY = dict(num_points=64, encoder_points=32, global_dim=8, enc_widths=(16, 32), enc_hidden=16, dec_hidden=16,
            dec_blocks=1, global_prior_hidden=32, global_prior_blocks=1, point_prior_hidden=16,
            point_prior_blocks=1, diffusion_steps=100)


def _tiny_model(seed=0) -> lion.LionModel:
    torch.manual_seed(seed)
    m = lion.LionModel(lion.LionConfig(**TINY))
    for p in m.parameters():  # zero-initialised heads would make every test trivially pass
        p.data.add_(0.05 * torch.randn_like(p))
    return m.eval()


def test_ddim_recovers_a_point_mass_exactly():
    """With the exact epsilon of a point-mass data distribution, DDIM (eta 0) lands on it."""
    d = lion.Diffusion(1000, 1e-4, 0.02)
    target = torch.tensor([[0.3, -0.7, 1.2]])
    ac = d.alphas_cumprod

    def eps(x, t):
        a = ac[t][:, None]
        return (x - a.sqrt() * target) / (1 - a).sqrt()

    x = d.ddim(eps, torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), num_steps=10)
    torch.testing.assert_close(x, target.expand(4, 3), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="DDIM steps"):
        d.ddim_timesteps(0)


def test_q_sample_has_the_schedule_statistics():
    d = lion.Diffusion(1000, 1e-4, 0.02)
    x0 = torch.full((20000, 1), 2.0)
    t = torch.full((20000,), 500)
    xt = d.q_sample(x0, t, torch.randn(20000, 1, generator=torch.Generator().manual_seed(0)))
    a = d.alphas_cumprod[500]
    assert xt.mean().item() == pytest.approx(2.0 * a.sqrt().item(), abs=0.02)
    assert xt.std().item() == pytest.approx((1 - a).sqrt().item(), abs=0.02)


def test_sampling_shapes_determinism_and_batch_independence():
    g = lion.LionGenerator("cpu", _tiny_model(), ddim_steps=4)
    z, pts = g.sample([11, 12, 13])
    assert z.shape == (3, 8 + 64 * 4) and pts.shape == (3, 64, 3) and g.z_dim == 264
    z2, pts2 = g.sample([12])
    assert torch.equal(z[1], z2[0]) and torch.allclose(pts[1], pts2[0], atol=1e-6)
    z3, _ = g.sample([11, 12, 13])
    assert torch.equal(z, z3)
    assert not torch.allclose(z[0], z[1])
    assert pts.norm(dim=-1).amax(dim=1).sub(1).abs().max() < 1e-5  # renormalised to the unit sphere
    # eta > 0 draws its per-step noise from the seed as well
    ge = lion.LionGenerator("cpu", _tiny_model(), ddim_steps=4, eta=1.0)
    za, _ = ge.sample([5, 6])
    zb, _ = ge.sample([6])
    assert torch.equal(za[1], zb[0]) and not torch.equal(za[1], g.sample([6])[0][0])


def test_output_does_not_depend_on_latent_point_order_and_z_g_is_canonical():
    g = lion.LionGenerator("cpu", _tiny_model(), ddim_steps=4)
    z, pts = g.sample([3])
    z_glob, lp = lion.unpack_latents(z, g.cfg)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(1))
    shuffled = lion.pack_latents(z_glob, lp[:, perm])
    out = g.decode(shuffled)
    # same set of points, in the permuted order
    torch.testing.assert_close(out, pts[:, perm], rtol=1e-5, atol=1e-6)
    # canonicalising the shuffled latents gives back exactly the stored z_G
    assert torch.equal(lion.pack_latents(z_glob, g.canonicalise(lp[:, perm])), z)
    m = g.module
    codes = lion.morton_codes((lp[0, :, :3] - m.p_mean[:3]) / (3 * m.p_std[:3].max()))
    assert (codes[1:] >= codes[:-1]).all()
    # the switch: "none" keeps the diffusion order
    gn = lion.LionGenerator("cpu", _tiny_model(), ddim_steps=4, canonical_order="none")
    zn, _ = gn.sample([3])
    assert not torch.equal(zn, z) and torch.equal(g.canonicalise(lion.unpack_latents(zn, g.cfg)[1]), lp)
    with pytest.raises(ValueError, match="canonical order"):
        lion.LionGenerator("cpu", _tiny_model(), canonical_order="hilbert")


def test_morton_codes_interleave_axes():
    corners = torch.tensor([[-1.0, -1, -1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, 1]])
    c = lion.morton_codes(corners, bits=2)
    assert c.tolist() == [0, 0b001001, 0b010010, 0b100100, 0b111111]


def test_z_g_shape_errors_are_explicit():
    g = lion.LionGenerator("cpu", _tiny_model(), ddim_steps=2)
    with pytest.raises(ValueError, match=r"z_G must be \[B, 264\]"):
        g.decode(torch.zeros(1, 100))


def test_official_layout_round_trip(tmp_path):
    m = _tiny_model(3)
    export_official_layout(m, tmp_path / "cfg.yml", tmp_path / "model.pt")
    back, report = read_lion_checkpoint(tmp_path / "cfg.yml", tmp_path / "model.pt")
    assert report.complete, report.summary()
    assert report.config.global_dim == 8 and report.config.num_points == 64
    ga = lion.LionGenerator("cpu", m, ddim_steps=3)
    gb = lion.LionGenerator("cpu", back, ddim_steps=3)
    assert torch.equal(ga.sample([1])[0], gb.sample([1])[0])


def test_official_checkpoint_with_pvcnn_networks_reports_what_it_cannot_load(tmp_path):
    import yaml

    cfg = {"data": {"tr_max_sample_points": 2048}, "ddpm": {"input_dim": 3, "num_steps": 1000, "beta_1": 1e-4,
           "beta_T": 0.02, "sched_mode": "linear"}, "shapelatent": {"latent_dim": 1,
           "encoder_type": "models.shapelatent_modules.PointNetPlusEncoder",
           "decoder_type": "models.latent_points_ada.LatentPointDecPVC"},
           "latent_pts": {"style_dim": 128, "style_encoder": "models.shapelatent_modules.PointNetPlusEncoder"}}
    (tmp_path / "cfg.yml").write_text(yaml.safe_dump(cfg))
    vae = {"style_encoder.layers.0.weight": torch.zeros(32, 3), "encoder.sa_layers.0.voxel_layers.0.weight":
           torch.zeros(32, 3, 3, 3, 3), "decoder.classifier.1.weight": torch.zeros(3, 128, 1)}
    dae = {"0.net.0.weight": torch.zeros(4), "1.prior.sa_layers.0.weight": torch.zeros(4)}
    torch.save({"vae_state_dict": vae, "dae_state_dict": dae, "epoch": 10}, tmp_path / "ckpt.pt")
    model, report = read_lion_checkpoint(tmp_path / "cfg.yml", tmp_path / "ckpt.pt")
    assert report.config.num_points == 2048 and report.config.z_dim == 8320
    assert not report.complete and report.loaded == []
    assert {"vae.style_encoder", "vae.encoder", "vae.decoder", "prior.0.net", "prior.1.prior"} <= set(report.not_loaded)
    text = report.summary()
    assert "cannot load vae.encoder" in text and "PVCNN" in text
    torch.save({"vae_state_dict": vae}, tmp_path / "half.pt")
    with pytest.raises(LionCheckpointError, match="dae_state_dict"):
        read_lion_checkpoint(tmp_path / "cfg.yml", tmp_path / "half.pt")


def test_generative_metrics_definitions():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(6, 32, 3, generator=g)
    # pairwise Chamfer equals the reference chamfer()
    pc = pairwise_chamfer(ref[:3], ref[3:])
    assert torch.allclose(pc[1, 2], chamfer(ref[1:2], ref[5:6])[0], rtol=1e-4)
    # a set far away: 1-NNA 100 %, coverage of one reference at most
    far = ref + 10.0
    m = generative_metrics(far, ref)
    assert m["1nna_cd"] == 1.0 and m["mmd_cd"] > 50
    # a perfect copy: MMD 0 and full coverage
    m = generative_metrics(ref.clone(), ref)
    assert m["mmd_cd"] == pytest.approx(0, abs=1e-6) and m["cov_cd"] == 1.0
    # hand-made distances: gen 0 nearest ref 0, gen 1 nearest ref 0 -> coverage 1/2
    g_r = torch.tensor([[1.0, 5.0], [2.0, 9.0]])
    out = metrics_from_distances(g_r, torch.tensor([[0.0, 3.0], [3.0, 0.0]]), torch.tensor([[0.0, 4.0], [4.0, 0.0]]))
    assert out["cov_cd"] == 0.5 and out["mmd_cd"] == pytest.approx((1.0 + 5.0) / 2)
    # 1-NNA leave-one-out: g0->r0 (wrong), g1->r0 (wrong), r0->g0 (wrong), r1->r0 (right: 4 < 5)
    assert out["1nna_cd"] == 0.25


def test_shipped_generator_samples_and_reconstructs():
    from squeeze3d.corpora import points as corpus

    gen = lion.LionGenerator("cpu", ddim_steps=8)
    assert gen.z_dim == 8320 and gen.configs["priors"]["vae_hash"] == gen.configs["vae"]["hash"]
    z, pts = gen.sample([0])
    assert z.shape == (1, 8320) and pts.shape == (1, 2048, 3) and torch.isfinite(pts).all()
    # VAE reconstruction of a held-out shape is close to the resampling floor
    s = corpus.make_shape(0, int(corpus.split_indices("test", 120)[0]), 2048)
    x = torch.from_numpy(s.points)[None]
    rec = gen.decode(gen.encode_latents(x))
    floor = chamfer(x, torch.from_numpy(corpus.resample(s, 2048, 1))[None]).item()
    cd = chamfer(x, rec).item()
    assert cd < 3 * floor, f"recon chamfer {cd:.2e} vs resampling floor {floor:.2e}"
