"""The grid volume renderer and render-space metrics (``squeeze3d.metrics.volume``): background,
colours of opaque objects, the fixed sample lattice, PSNR/MS-SSIM of identical and different grids."""

import numpy as np
import torch

from squeeze3d.metrics.volume import ms_ssim, psnr, radiance_metrics, render

R = 16


def _scene(seed=0, r=R):
    """Two coloured boxes with random densities in empty space."""
    rng = np.random.default_rng(seed)
    g = np.zeros((4, r, r, r), np.float32)
    for _ in range(2):
        lo = rng.integers(1, r // 2, 3)
        hi = lo + rng.integers(3, r // 2, 3)
        sl = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        g[(slice(0, 3), *sl)] = rng.random(3)[:, None, None, None]
        g[(3, *sl)] = rng.uniform(0.5, 20)
    return g


def test_render_empty_grid_is_background_and_opaque_cube_shows_its_colour():
    g = torch.zeros(2, 4, R, R, R)
    g[1, :3] = torch.tensor([0.9, 0.3, 0.1])[:, None, None, None]
    g[1, 3, 4:12, 4:12, 4:12] = 60.0
    img = render(g, num_views=4, image_size=32)
    assert img.shape == (2, 4, 3, 32, 32)
    assert torch.allclose(img[0], torch.ones_like(img[0]))
    centre = img[1, :, :, 16, 16]
    assert torch.allclose(centre, torch.tensor([0.9, 0.3, 0.1]).expand_as(centre), atol=1e-3)
    assert (img[1, :, :, 0, 0] == 1).all()  # corners miss the object: background


def test_radiance_metrics_identical_and_different():
    a = torch.from_numpy(np.stack([_scene(0), _scene(1)]))
    m = radiance_metrics(a, a.clone())
    assert torch.all(m["psnr"] >= 99.9) and torch.allclose(m["ms_ssim"], torch.ones(2), atol=1e-5)
    b = a.clone()
    b[:, 3] *= 0.2
    m2 = radiance_metrics(a, b)
    assert torch.all(m2["psnr"] < 40) and torch.all(m2["ms_ssim"] < 1.0)
    imgs = render(a, num_views=2, image_size=64).flatten(0, 1)
    assert ms_ssim(imgs, imgs.flip(-1)).max() < 0.999  # a mirrored image is not the same


def test_samples_sit_on_a_fixed_lattice_whatever_the_grid_holds():
    # only samples near occupied voxels are evaluated; a far-away speck of density (which widens that
    # range to the whole cube) must not move where the object is sampled
    g = torch.from_numpy(_scene(4))[None]
    wide = g.clone()
    wide[0, 3, 0, 0, 0] = wide[0, 3, -1, -1, -1] = 1e-6
    assert (render(g) - render(wide)).abs().max() < 1e-4


def test_opacity_grows_with_density_and_psnr_definition():
    thin, thick = torch.zeros(1, 4, R, R, R), torch.zeros(1, 4, R, R, R)
    thin[0, 3, 6:10, 6:10, 6:10], thick[0, 3, 6:10, 6:10, 6:10] = 0.05, 0.5  # black fog, white background
    c_thin, c_thick = render(thin)[0, :, 0, 32, 32], render(thick)[0, :, 0, 32, 32]
    assert torch.all(c_thick < c_thin) and torch.all(c_thin < 1)
    a, b = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.1)
    assert torch.allclose(psnr(a, b), torch.full((2,), 20.0))
