"""A mini MeshAnything as the mesh encoder E: the Michelangelo shape autoencoder MeshAnything uses
as its point encoder, plus MeshAnything's conditioning projections, at a CPU-sized width.

Architecture (module and parameter names follow MeshAnything / Michelangelo, so a checkpoint in
their layout maps onto this one key for key, see ``meshanything_checkpoint``):

    shape_model.encoder      Fourier(xyz) ++ normals [++ rgb] -> input_proj -> 1 + L learned queries
                             cross-attend to the points -> self-attention blocks -> ln_post
    shape_model.pre_kl/post_kl   the KL bottleneck of the L shape tokens (mean used at encode time)
    shape_model.transformer  the decoder-side self-attention over the L tokens
    shape_model.geo_decoder  query points (Fourier) cross-attend to the decoded tokens -> occupancy
    shape_projection         the CLIP-alignment projection of the global token (kept for the layout;
                             MeshAnything does not use it on the z_E path, and the mini has no CLIP)
    cond_head_proj, cond_proj    MeshAnything's ``process_point_feature``:
                             z_E[0]  = cond_head_proj(global token)
                             z_E[1:] = cond_proj([shape tokens ++ decoded shape tokens])   -> [1+L, d]
    color_decoder            (mini only, ``color_channels=3``) surface points cross-attend to z_E ->
                             sRGB, so colour, given as input, is carried through z_E and the two
                             conditioning projections are trained (MeshAnything trains them with its
                             mesh-generating transformer, which the mini does not have).

The asset tensor is surface samples ``[B, N, 9]`` (xyz, unit normal, rgb) of a unit-sphere mesh;
z_E is ``[B, 1 + L, d]`` (``[65, 64]`` for the shipped weights; MeshAnything: ``[257, 1024]``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from squeeze3d.errors import CheckpointError
from squeeze3d.zoo.base import Encoder
from squeeze3d.zoo.pretrained import SHIPPED_WEIGHTS

WEIGHTS_DIR = SHIPPED_WEIGHTS / "meshanything_shape"
WEIGHTS_NAME = "meshanything_shape"


@dataclass
class MeshAnythingConfig:
    num_latents: int = 64
    """Shape tokens L (plus one global token); MeshAnything: 256."""
    width: int = 64
    """Transformer width (MeshAnything: 768)."""
    heads: int = 4
    num_encoder_layers: int = 2
    """Self-attention blocks after the cross-attention (MeshAnything: 8)."""
    num_decoder_layers: int = 2
    """Decoder-side self-attention blocks (MeshAnything: 16)."""
    embed_dim: int = 16
    """KL bottleneck channels per token (MeshAnything: 64)."""
    num_freqs: int = 8
    include_pi: bool = False
    color_channels: int = 3
    """0: xyz + normals in (MeshAnything's, and the real-format layout); 3: also rgb, with a colour head."""
    cond_dim: int = 64
    """d, the width of z_E (MeshAnything: the OPT hidden size, 1024)."""
    qkv_bias: bool = False
    init_scale: float = 0.25

    @classmethod
    def from_dict(cls, d: dict) -> MeshAnythingConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown MeshAnythingConfig keys {unknown}; known: {sorted(names)}")
        return cls(**d)

    @property
    def point_feats(self) -> int:
        return 3 + self.color_channels

    @property
    def z_shape(self) -> tuple[int, int]:
        return (1 + self.num_latents, self.cond_dim)


# ----------------------------------------------------------------------------------------------
# building blocks (Michelangelo's maths and parameter layout)


class FourierEmbedder(nn.Module):
    """``[x, sin(f x), cos(f x)]`` with f = 2^0..2^(F-1) (times pi when ``include_pi``), per input
    dimension all frequencies in a row: the order Michelangelo's input projections were trained on."""

    def __init__(self, num_freqs: int, include_pi: bool):
        super().__init__()
        f = 2.0 ** torch.arange(num_freqs, dtype=torch.float32)
        self.register_buffer("frequencies", f * math.pi if include_pi else f, persistent=False)
        self.out_dim = 3 * (2 * num_freqs + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = (x[..., None] * self.frequencies).flatten(-2)
        return torch.cat([x, e.sin(), e.cos()], dim=-1)


def _heads(x: torch.Tensor, heads: int, parts: int) -> list[torch.Tensor]:
    """Split a fused projection ``[B, T, parts * W]`` into ``parts`` tensors ``[B, heads, T, W/heads]``.
    The fused channels are laid out per head (``[q_h, k_h, v_h]`` for each head in turn), as in
    Michelangelo, so real checkpoints mean the same here."""
    b, t, c = x.shape
    x = x.view(b, t, heads, parts, c // (heads * parts))
    return [x[:, :, :, i].transpose(1, 2) for i in range(parts)]


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, t, c = x.shape
    return x.transpose(1, 2).reshape(b, t, h * c)


def _init(layer: nn.Linear, std: float) -> None:
    nn.init.normal_(layer.weight, std=std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class MLP(nn.Module):
    def __init__(self, width: int, init_scale: float):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.c_proj = nn.Linear(4 * width, width)
        _init(self.c_fc, init_scale)
        _init(self.c_proj, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, init_scale: float, qkv_bias: bool):
        super().__init__()
        self.heads = heads
        self.c_qkv = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.c_proj = nn.Linear(width, width)
        _init(self.c_qkv, init_scale)
        _init(self.c_proj, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = _heads(self.c_qkv(x), self.heads, 3)
        return self.c_proj(_merge(F.scaled_dot_product_attention(q, k, v)))


class CrossAttention(nn.Module):
    def __init__(self, width: int, heads: int, init_scale: float, qkv_bias: bool, data_width: int):
        super().__init__()
        self.heads = heads
        self.c_q = nn.Linear(width, width, bias=qkv_bias)
        self.c_kv = nn.Linear(data_width, 2 * width, bias=qkv_bias)
        self.c_proj = nn.Linear(width, width)
        for layer in (self.c_q, self.c_kv, self.c_proj):
            _init(layer, init_scale)

    def forward(self, x: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        (q,) = _heads(self.c_q(x), self.heads, 1)
        k, v = _heads(self.c_kv(data), self.heads, 2)
        return self.c_proj(_merge(F.scaled_dot_product_attention(q, k, v)))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, init_scale: float, qkv_bias: bool):
        super().__init__()
        self.attn = SelfAttention(width, heads, init_scale, qkv_bias)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = MLP(width, init_scale)
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class ResidualCrossAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, init_scale: float, qkv_bias: bool, data_width: int | None = None):
        super().__init__()
        data_width = width if data_width is None else data_width
        self.attn = CrossAttention(width, heads, init_scale, qkv_bias, data_width)
        self.ln_1 = nn.LayerNorm(width)
        self.ln_2 = nn.LayerNorm(data_width)
        self.mlp = MLP(width, init_scale)
        self.ln_3 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), self.ln_2(data))
        return x + self.mlp(self.ln_3(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, init_scale: float, qkv_bias: bool):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, init_scale, qkv_bias)
                                       for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class CrossAttentionEncoder(nn.Module):
    def __init__(self, cfg: MeshAnythingConfig, embedder: FourierEmbedder, init_scale: float):
        super().__init__()
        w = cfg.width
        self.query = nn.Parameter(torch.randn(1 + cfg.num_latents, w) * 0.02)
        self.input_proj = nn.Linear(embedder.out_dim + cfg.point_feats, w)
        self.cross_attn = ResidualCrossAttentionBlock(w, cfg.heads, init_scale, cfg.qkv_bias)
        self.self_attn = Transformer(w, cfg.num_encoder_layers, cfg.heads, init_scale, cfg.qkv_bias)
        self.ln_post = nn.LayerNorm(w)
        self._embed = [embedder]  # shared, not registered twice (it has no persistent state anyway)

    def forward(self, pc: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        data = self.input_proj(torch.cat([self._embed[0](pc), feats], dim=-1))
        x = self.cross_attn(self.query.expand(pc.shape[0], -1, -1), data)
        return self.ln_post(self.self_attn(x))


class CrossAttentionDecoder(nn.Module):
    """Query points (Fourier-embedded) cross-attend to a token set; one linear read-out."""

    def __init__(self, width: int, heads: int, out_channels: int, embedder: FourierEmbedder, init_scale: float,
                 qkv_bias: bool, data_width: int | None = None):
        super().__init__()
        self.query_proj = nn.Linear(embedder.out_dim, width)
        self.cross_attn_decoder = ResidualCrossAttentionBlock(width, heads, init_scale, qkv_bias, data_width)
        self.ln_post = nn.LayerNorm(width)
        self.output_proj = nn.Linear(width, out_channels)
        self._embed = [embedder]

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        x = self.cross_attn_decoder(self.query_proj(self._embed[0](queries)), tokens)
        return self.output_proj(self.ln_post(x))


class ShapeModel(nn.Module):
    """Michelangelo's ``AlignedShapeLatentPerceiver`` (a 1 + L token Perceiver VAE on surface points)."""

    def __init__(self, cfg: MeshAnythingConfig):
        super().__init__()
        init_scale = cfg.init_scale * math.sqrt(1.0 / cfg.width)
        self.fourier_embedder = FourierEmbedder(cfg.num_freqs, cfg.include_pi)
        self.encoder = CrossAttentionEncoder(cfg, self.fourier_embedder, init_scale)
        self.pre_kl = nn.Linear(cfg.width, 2 * cfg.embed_dim)
        self.post_kl = nn.Linear(cfg.embed_dim, cfg.width)
        self.transformer = Transformer(cfg.width, cfg.num_decoder_layers, cfg.heads, init_scale, cfg.qkv_bias)
        self.geo_decoder = CrossAttentionDecoder(cfg.width, cfg.heads, 1, self.fourier_embedder, init_scale,
                                                 cfg.qkv_bias)

    def moments(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.pre_kl(latents).chunk(2, dim=-1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.transformer(self.post_kl(z))


class MeshAnythingMini(nn.Module):
    def __init__(self, cfg: MeshAnythingConfig):
        super().__init__()
        if cfg.color_channels not in (0, 3):
            raise ValueError(f"color_channels must be 0 (xyz + normals) or 3 (+ rgb), got {cfg.color_channels}")
        self.cfg = cfg
        self.shape_model = ShapeModel(cfg)
        # identity-initialised: no CLIP to align with here, so the aligned embedding is the raw global token
        self.shape_projection = nn.Parameter(torch.eye(cfg.width))
        self.cond_head_proj = nn.Linear(cfg.width, cfg.cond_dim)
        self.cond_proj = nn.Linear(2 * cfg.width, cfg.cond_dim)
        if cfg.color_channels:
            init_scale = cfg.init_scale * math.sqrt(1.0 / cfg.width)
            self.color_decoder = CrossAttentionDecoder(cfg.width, cfg.heads, 3, self.shape_model.fourier_embedder,
                                                       init_scale, cfg.qkv_bias, data_width=cfg.cond_dim)

    def split_input(self, surface: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if surface.ndim != 3 or surface.shape[-1] != 9:
            raise ValueError(f"mesh encoder expects surface samples [B, N, 9] (xyz, normal, rgb), "
                             f"got {tuple(surface.shape)}")
        return surface[..., :3], surface[..., 3:3 + self.cfg.point_feats]

    def encode_latents(self, surface: torch.Tensor) -> torch.Tensor:
        """``[B, 1 + L, width]``: the global token then the shape tokens (MeshAnything's point_feature)."""
        return self.shape_model.encoder(*self.split_input(surface))

    def process_point_feature(self, point_feature: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """MeshAnything's conditioning: head token projected, shape tokens ++ their decoded version projected."""
        head = self.cond_head_proj(point_feature[:, :1])
        return torch.cat([head, self.cond_proj(torch.cat([point_feature[:, 1:], decoded], dim=-1))], dim=1)

    def z_e(self, surface: torch.Tensor) -> torch.Tensor:
        """z_E ``[B, 1 + L, cond_dim]`` (posterior mean, as MeshAnything's ``to_shape_latents``)."""
        pf = self.encode_latents(surface)
        mean, _ = self.shape_model.moments(pf[:, 1:])
        return self.process_point_feature(pf, self.shape_model.decode(mean))

    def forward(self, surface: torch.Tensor, occ_queries: torch.Tensor, color_queries: torch.Tensor | None = None,
                sample: bool = True, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Training pass: occupancy logits ``[B, Q]``, colours ``[B, C, 3]`` (when a colour head), KL."""
        pf = self.encode_latents(surface)
        mean, logvar = self.shape_model.moments(pf[:, 1:])
        z = mean
        if sample:
            # drawn on CPU (the generator's device), then moved: the same noise on any device
            eps = torch.randn(mean.shape, generator=generator).to(mean.device)
            z = mean + torch.exp(0.5 * logvar) * eps
        decoded = self.shape_model.decode(z)
        out = {"occ_logits": self.shape_model.geo_decoder(occ_queries, decoded).squeeze(-1),
               "kl": 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1).mean()}
        if self.cfg.color_channels and color_queries is not None:
            cond = self.process_point_feature(pf, decoded)
            out["color"] = torch.sigmoid(self.color_decoder(color_queries, cond))
        return out

    @torch.no_grad()
    def occupancy(self, surface: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Occupancy logits of ``queries [B, Q, 3]`` decoded from the posterior mean."""
        pf = self.encode_latents(surface)
        mean, _ = self.shape_model.moments(pf[:, 1:])
        return self.shape_model.geo_decoder(queries, self.shape_model.decode(mean)).squeeze(-1)

    @torch.no_grad()
    def colors(self, surface: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        if not self.cfg.color_channels:
            raise ValueError("this model has no colour head (color_channels=0)")
        return torch.sigmoid(self.color_decoder(queries, self.z_e(surface)))


# ----------------------------------------------------------------------------------------------
# weights: safetensors + JSON config (no pickle)


def save_weights(model: MeshAnythingMini, directory: str | Path, extra: dict | None = None,
                 name: str = WEIGHTS_NAME, fp16: bool = True) -> Path:
    """``<name>.safetensors`` (fp16 by default: halves the shipped size, the encoder runs in fp32)
    and ``<name>.json`` (``{"config": MeshAnythingConfig, ...extra}``)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.half() if fp16 else v).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(directory / f"{name}.safetensors"))
    meta = {"config": asdict(model.cfg), "z_e_shape": list(model.cfg.z_shape), **(extra or {})}
    (directory / f"{name}.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return directory / f"{name}.safetensors"


class MeshAnythingCheckpointError(CheckpointError):
    """A checkpoint whose keys or shapes do not match the mini MeshAnything encoder."""


def check_state_dict(state: Mapping[str, torch.Tensor], model: MeshAnythingMini, source: str = "checkpoint") -> None:
    """Raise one line naming every missing, mis-shaped and unexpected key (mini-model names)."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    misshaped = sorted(f"{k} {tuple(state[k].shape)} (expected {want[k]})"
                       for k in set(want) & set(state) if tuple(state[k].shape) != want[k])
    if missing or unexpected or misshaped:
        parts = [f"missing {len(missing)}: {', '.join(missing)}" if missing else "",
                 f"mis-shaped {len(misshaped)}: {'; '.join(misshaped)}" if misshaped else "",
                 f"unexpected {len(unexpected)}: {', '.join(unexpected)}" if unexpected else ""]
        raise MeshAnythingCheckpointError(f"{source} does not match the mini MeshAnything encoder "
                                          f"(width {model.cfg.width}, {model.cfg.num_latents} latents): "
                                          + " | ".join(p for p in parts if p))


def load_weights(directory: str | Path = WEIGHTS_DIR, name: str = WEIGHTS_NAME) -> tuple[MeshAnythingMini, dict]:
    from safetensors.torch import load_file

    directory = Path(directory)
    wpath, cpath = directory / f"{name}.safetensors", directory / f"{name}.json"
    if not wpath.exists() or not cpath.exists():
        raise FileNotFoundError(f"mini MeshAnything weights not found at {wpath} (+ {cpath.name}); train them "
                                "with `python jobs/train_zoo.py --pair meshanything_shape --stages meshanything`")
    meta = json.loads(cpath.read_text())
    model = MeshAnythingMini(MeshAnythingConfig.from_dict(meta["config"]))
    state = load_file(str(wpath))
    check_state_dict(state, model, str(wpath))
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval(), meta


class MeshAnythingEncoder(Encoder):
    """E for meshes: surface samples ``[B, N, 9]`` (xyz, normal, rgb) -> z_E ``[B, 1 + L, d]``."""

    name = "meshanything-mini"

    def __init__(self, device: str | torch.device = "cpu", model: MeshAnythingMini | None = None,
                 weights: str | Path | None = None, meta: dict | None = None):
        """``model``: use this module; else load ``weights`` (a folder with the safetensors + JSON),
        default the shipped ``zoo/weights/meshanything_shape``."""
        if model is None:
            model, meta = load_weights(weights if weights is not None else WEIGHTS_DIR)
        self.meta = meta or {}
        self.config = model.cfg
        super().__init__(model, device)

    @property
    def z_e_shape(self) -> tuple[int, int]:
        return self.config.z_shape

    def _encode(self, assets: torch.Tensor) -> torch.Tensor:
        return self.module.z_e(assets)
