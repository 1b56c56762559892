"""One copy of the text encoder: the pipeline's CLIPTextModel built on the CLIP's own tensors gives
the same text features as open_clip's tower (parity), shares its memory, and is refused when the
pipeline's weights file holds other weights."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from pez.generate.text_encoder import hf_to_open_clip, open_clip_tensor, same_tower, shared_text_encoder

WIDTH, LAYERS, HEADS, VOCAB, CONTEXT = 64, 3, 4, 512, 77


@pytest.fixture(scope="module")
def clip():
    import open_clip

    torch.manual_seed(0)
    text_cfg = {"context_length": CONTEXT, "vocab_size": VOCAB, "width": WIDTH, "heads": HEADS, "layers": LAYERS}
    vision_cfg = {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16}
    model = open_clip.model.CLIP(embed_dim=32, vision_cfg=vision_cfg, text_cfg=text_cfg).eval().requires_grad_(False)
    for p in model.parameters():  # no exact zeros / ones: every tensor is checked
        p.add_(torch.randn_like(p) * 0.02)
    return SimpleNamespace(model=model, device=torch.device("cpu"), name="tiny")


def hf_config(layers: int = LAYERS - 1) -> dict:  # SD 2.x reads the penultimate layer: one layer fewer
    return {
        "architectures": ["CLIPTextModel"],
        "model_type": "clip_text_model",
        "hidden_act": "gelu",
        "hidden_size": WIDTH,
        "intermediate_size": 4 * WIDTH,
        "num_attention_heads": HEADS,
        "num_hidden_layers": layers,
        "vocab_size": VOCAB,
        "max_position_embeddings": CONTEXT,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 1,
    }


def write_encoder(folder, clip, dtype=torch.float16, change: str | None = None):
    """A pipeline's text_encoder folder holding the CLIP's own weights (as published), in `dtype`."""
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    folder.mkdir(parents=True, exist_ok=True)
    config = hf_config()
    (folder / "config.json").write_text(json.dumps(config))
    with torch.device("meta"):
        names = [n for n, _ in CLIPTextModel(CLIPTextConfig(**config)).named_parameters()]
    state = clip.model.state_dict()
    tensors = {"text_model." + n: open_clip_tensor(state, n).to(dtype).contiguous().clone() for n in names}
    if change:
        tensors["text_model." + change] += 0.05
    save_file(tensors, str(folder / "model.fp16.safetensors"))
    return folder


def test_every_text_encoder_parameter_has_an_open_clip_counterpart(clip):
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        encoder = CLIPTextModel(CLIPTextConfig(**hf_config()))
    state = clip.model.state_dict()
    for name, param in encoder.named_parameters():
        assert open_clip_tensor(state, name).shape == param.shape, name
    assert hf_to_open_clip("text_model.encoder.layers.2.self_attn.v_proj.bias") == (
        "transformer.resblocks.2.attn.in_proj_bias",
        2,
    )
    with pytest.raises(KeyError):
        hf_to_open_clip("text_projection.weight")
    assert same_tower(hf_config(), clip.model)
    assert not same_tower({**hf_config(), "hidden_act": "quick_gelu"}, clip.model)
    assert not same_tower(hf_config(layers=LAYERS + 1), clip.model)


def test_shared_encoder_matches_open_clip_and_holds_no_copy(clip, tmp_path):
    encoder = shared_text_encoder(write_encoder(tmp_path / "te", clip), clip, torch.float32)
    assert encoder is not None
    model = clip.model
    storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert all(p.untyped_storage().data_ptr() in storages for p in encoder.parameters())  # views, no copy

    ids = torch.randint(3, VOCAB, (2, CONTEXT))
    with torch.no_grad():
        ours = encoder(ids).last_hidden_state
        x = model.token_embedding(ids) + model.positional_embedding
        for block in model.transformer.resblocks[: LAYERS - 1]:
            x = block(x, attn_mask=model.attn_mask)
        reference = model.ln_final(x)  # what SD 2.x conditions on: ln_final of the penultimate layer
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_other_weights_or_dtype_are_not_shared(clip, tmp_path):
    changed = write_encoder(tmp_path / "changed", clip, change="encoder.layers.1.mlp.fc1.weight")
    assert shared_text_encoder(changed, clip, torch.float32) is None
    same = write_encoder(tmp_path / "same", clip)
    assert shared_text_encoder(same, clip, torch.bfloat16) is None  # the CLIP is fp32: no shared bf16 copy
    (same / "config.json").write_text(json.dumps({**hf_config(), "hidden_size": 2 * WIDTH}))
    assert shared_text_encoder(same, clip, torch.float32) is None
