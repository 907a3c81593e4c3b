"""Writes the key/shape manifests of the published checkpoints that tests/unit/zoo/test_published_layouts.py
checks our model code against. Run from the repository root (CPU only, no download, no memory: meta device):

    PYTHONPATH=platform python tests/data/layouts/make_manifests.py

shap_e_prior.json, shap_e_renderer.json: diffusers' own classes (``PriorTransformer``, ``ShapERenderer``)
at the configuration of the openai/shap-e checkpoint as diffusers publishes it (prior: the PRIOR_CONFIG of
diffusers' scripts/convert_shap_e_to_diffusers.py, which is the hub's prior/config.json; renderer: the
class defaults, which the conversion script uses unchanged). These files are the layout of
``prior/diffusion_pytorch_model.safetensors`` and ``shap_e_renderer/diffusion_pytorch_model.safetensors``.

meshanything_350m_encoder.json: the z_E path of MeshAnything_350m.pth, enumerated here from the official
code of buaacyw/MeshAnything (read, not imported): MeshAnything/miche/shapevae-256.yaml (num_latents 256,
embed_dim 64, point_feats 3, num_freqs 8, include_pi false, heads 12, width 768, 8 encoder and 16
decoder layers, use_ln_post true, qkv_bias false), miche/michelangelo/models/tsal/sal_perceiver.py
(AlignedShapeLatentPerceiver: 1 + num_latents queries), .../modules/transformer_blocks.py (block
layouts), .../tsal/clip_asl_module.py (shape_projection [width, width]) and models/meshanything.py
(cond_head_proj: Linear(768, 1024), cond_proj: Linear(1536, 1024); 1024 = OPT-350m's hidden size,
to which MeshAnything sets word_embed_proj_dim). FourierEmbedder's frequencies are a non-persistent
buffer (not in the file).
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

SHAP_E_PRIOR_CONFIG = {
    "num_attention_heads": 16, "attention_head_dim": 64, "num_layers": 24, "embedding_dim": 1024,
    "num_embeddings": 1024, "additional_embeddings": 0, "time_embed_act_fn": "gelu", "norm_in_type": "layer",
    "encoder_hid_proj_type": None, "added_emb_type": None, "time_embed_dim": 4096, "embedding_proj_dim": 768,
    "clip_embed_dim": 2048,
}
SHAP_E_RENDERER_CONFIG = {
    "param_names": ["nerstf.mlp.0.weight", "nerstf.mlp.1.weight", "nerstf.mlp.2.weight", "nerstf.mlp.3.weight"],
    "param_shapes": [[256, 93], [256, 256], [256, 256], [256, 256]], "d_latent": 1024, "d_hidden": 256,
    "n_output": 12, "n_hidden_layers": 6, "act_fn": "swish", "insert_direction_at": 4,
}
MESHANYTHING_350M = {"num_latents": 256, "embed_dim": 64, "point_feats": 3, "num_freqs": 8, "include_pi": False,
                     "heads": 12, "width": 768, "num_encoder_layers": 8, "num_decoder_layers": 16,
                     "use_ln_post": True, "qkv_bias": False, "cond_dim": 768, "llm_hidden": 1024}


def _meta_layout(module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def shap_e() -> None:
    import torch
    from diffusers import PriorTransformer
    from diffusers.pipelines.shap_e.renderer import ShapERenderer

    with torch.device("meta"):
        prior = PriorTransformer(**SHAP_E_PRIOR_CONFIG)
        cfg = dict(SHAP_E_RENDERER_CONFIG, param_names=tuple(SHAP_E_RENDERER_CONFIG["param_names"]),
                   param_shapes=tuple(map(tuple, SHAP_E_RENDERER_CONFIG["param_shapes"])))
        renderer = ShapERenderer(**cfg)
    src = ("diffusers PriorTransformer / ShapERenderer at the openai/shap-e configuration "
           "(tests/data/layouts/make_manifests.py)")
    for name, module, config in (("shap_e_prior", prior, SHAP_E_PRIOR_CONFIG),
                                 ("shap_e_renderer", renderer, SHAP_E_RENDERER_CONFIG)):
        buffers = sorted(k for k, _ in module.named_buffers() if k in module.state_dict())
        _write(name, src, config, _meta_layout(module), sum(p.numel() for p in module.parameters()), buffers)


def _linear(out: dict, prefix: str, i: int, o: int, bias: bool = True) -> None:
    out[f"{prefix}.weight"] = [o, i]
    if bias:
        out[f"{prefix}.bias"] = [o]


def _ln(out: dict, prefix: str, w: int) -> None:
    out[f"{prefix}.weight"], out[f"{prefix}.bias"] = [w], [w]


def _mlp(out: dict, prefix: str, w: int) -> None:
    _linear(out, f"{prefix}.c_fc", w, 4 * w)
    _linear(out, f"{prefix}.c_proj", 4 * w, w)


def _self_block(out: dict, prefix: str, w: int, qkv_bias: bool) -> None:
    _linear(out, f"{prefix}.attn.c_qkv", w, 3 * w, qkv_bias)
    _linear(out, f"{prefix}.attn.c_proj", w, w)
    _ln(out, f"{prefix}.ln_1", w)
    _mlp(out, f"{prefix}.mlp", w)
    _ln(out, f"{prefix}.ln_2", w)


def _cross_block(out: dict, prefix: str, w: int, qkv_bias: bool, data_w: int | None = None) -> None:
    d = data_w or w
    _linear(out, f"{prefix}.attn.c_q", w, w, qkv_bias)
    _linear(out, f"{prefix}.attn.c_kv", d, 2 * w, qkv_bias)
    _linear(out, f"{prefix}.attn.c_proj", w, w)
    _ln(out, f"{prefix}.ln_1", w)
    _ln(out, f"{prefix}.ln_2", d)
    _mlp(out, f"{prefix}.mlp", w)
    _ln(out, f"{prefix}.ln_3", w)


def meshanything() -> None:
    c = MESHANYTHING_350M
    w, b, tokens = c["width"], c["qkv_bias"], 1 + c["num_latents"]
    fourier = 3 * (2 * c["num_freqs"] + 1)
    out: dict[str, list[int]] = {}
    sm = "point_encoder.model.shape_model"
    out[f"{sm}.encoder.query"] = [tokens, w]
    _linear(out, f"{sm}.encoder.input_proj", fourier + c["point_feats"], w)
    _cross_block(out, f"{sm}.encoder.cross_attn", w, b)
    for i in range(c["num_encoder_layers"]):
        _self_block(out, f"{sm}.encoder.self_attn.resblocks.{i}", w, b)
    if c["use_ln_post"]:
        _ln(out, f"{sm}.encoder.ln_post", w)
    _linear(out, f"{sm}.pre_kl", w, 2 * c["embed_dim"])
    _linear(out, f"{sm}.post_kl", c["embed_dim"], w)
    for i in range(c["num_decoder_layers"]):
        _self_block(out, f"{sm}.transformer.resblocks.{i}", w, b)
    _linear(out, f"{sm}.geo_decoder.query_proj", fourier, w)
    _cross_block(out, f"{sm}.geo_decoder.cross_attn_decoder", w, b)
    _ln(out, f"{sm}.geo_decoder.ln_post", w)
    _linear(out, f"{sm}.geo_decoder.output_proj", w, 1)
    out["point_encoder.model.shape_projection"] = [w, w]
    _linear(out, "cond_head_proj", c["cond_dim"], c["llm_hidden"])
    _linear(out, "cond_proj", 2 * c["cond_dim"], c["llm_hidden"])
    total = 0
    for shape in out.values():
        n = 1
        for s in shape:
            n *= s
        total += n
    _write("meshanything_350m_encoder", "buaacyw/MeshAnything official code (see make_manifests.py docstring)",
           c, out, total)


def _write(name: str, source: str, config: dict, keys: dict, params: int, buffers: list[str] | None = None) -> None:
    doc = {"source": source, "config": config, "num_parameters": int(params), "buffers": buffers or [],
           "keys": dict(sorted(keys.items()))}
    (HERE / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{name}: {len(keys)} tensors, {params:,} parameters")


if __name__ == "__main__":
    shap_e()
    meshanything()
