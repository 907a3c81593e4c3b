"""One save/load path for every mini model (``zoo.pretrained``): the shipped weights read through it
and written back give the shipped files byte for byte, so their hashes (and every number measured
with them) are unchanged."""

import hashlib
import json

import pytest
import torch

from squeeze3d.zoo.pretrained import SHIPPED_WEIGHTS, load_pretrained, save_pretrained

SHIPPED = [("pointnet_lion", "pointnet2_cls"), ("pointnet_lion", "lion_vae"), ("pointnet_lion", "lion_priors"),
           ("nerfmae", "nerfmae")]


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("folder,name", SHIPPED)
def test_shipped_weights_round_trip_byte_for_byte(tmp_path, folder, name):
    src = SHIPPED_WEIGHTS / folder
    state, config = load_pretrained(src, name, name, "")
    assert all(v.dtype != torch.float16 for v in state.values())  # read as float32
    save_pretrained(state, tmp_path, name, config, fp16=True)
    for ext in ("safetensors", "json"):
        assert _sha(tmp_path / f"{name}.{ext}") == _sha(src / f"{name}.{ext}"), ext


def test_save_is_atomic_and_keeps_integer_buffers(tmp_path):
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    path = save_pretrained(m.state_dict(), tmp_path / "w", "tiny", {"architecture": {"hidden": 4}})
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["tiny.json", "tiny.safetensors"]
    state, config = load_pretrained(tmp_path / "w", "tiny", "tiny", "")
    assert path.name == "tiny.safetensors" and config == {"architecture": {"hidden": 4}}
    assert state["1.num_batches_tracked"].dtype == torch.int64 and state["0.weight"].dtype == torch.float32
    json.loads((tmp_path / "w" / "tiny.json").read_text())


def test_missing_weights_name_the_model_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="tiny weights not found.*train them"):
        load_pretrained(tmp_path, "tiny", "tiny", "train them")
