"""``--model culture-neurons`` takes lm-eval's ``hf`` arguments and does with each what ``hf`` does.

The oracle is lm-eval's own ``HFLM`` loading the same tiny checkpoint (saved in bfloat16, so that
``dtype=auto`` means something) with the same arguments: the device, the dtype, the batch settings,
every evaluation attribute and the logits must agree. Where ``hf`` cannot run on this machine (its
Python default ``device=cuda`` without a GPU) the expected value is written out instead.
"""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from tests.tiny import build_tokenizer, tiny_model

pytest.importorskip("lm_eval")

from lm_eval.models.huggingface import HFLM

from culture_neurons.errors import CultureNeuronsError, InputError
from culture_neurons.integrations.lm_eval_args import (
    BY_NAME,
    MODEL_ARGS,
    REFUSED,
    check_model_args,
    model_args_help,
)
from culture_neurons.integrations.lm_eval_loading import hf_device
from culture_neurons.integrations.lm_eval_model import CultureNeuronsLM

CUDA = torch.cuda.is_available()
HERE = "cuda" if CUDA else "cpu"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf_args")
    model = tiny_model("llama", device="cpu").to(torch.bfloat16)
    model.save_pretrained(folder / "tiny")
    build_tokenizer().save_pretrained(folder / "tiny")
    (folder / "outer").mkdir()
    model.save_pretrained(folder / "outer" / "inner")
    build_tokenizer().save_pretrained(folder / "outer" / "inner")
    return folder


IDS = torch.tensor([[1, 5, 9, 17, 33, 65, 7]])


def observed(lm) -> dict:
    """What lm-eval reads from a model object when it evaluates."""
    return {
        "device": str(lm.device),
        "dtype": lm.model.dtype,
        "batch_size": lm.batch_size,
        "batch_schedule": lm.batch_schedule,
        "max_batch_size": lm.max_batch_size,
        "max_length": lm.max_length,
        "truncation": lm.truncation,
        "logits_cache": lm.logits_cache,
        "add_bos_token": lm.add_bos_token,
        "prefix_token_id": lm.prefix_token_id,
        "softmax_dtype": lm.softmax_dtype,
        "mixed_precision_dtype": lm.mixed_precision_dtype,
        "think_end_token": lm.think_end_token,
        "enable_thinking": lm.enable_thinking,
        "chat_template_args": lm.chat_template_args,
        "backend": lm.backend,
        "tokenizer": type(lm.tokenizer).__name__,
        "vocab_size": lm.vocab_size,
        "attn": lm.model.config._attn_implementation,
    }


def logits(lm) -> torch.Tensor:
    with torch.no_grad():
        return lm._model_call(IDS.to(lm.device)).float().cpu()


def both(path, **kwargs):
    ours = CultureNeuronsLM(pretrained=str(path), **kwargs)
    theirs = HFLM(pretrained=str(path), **kwargs)
    return ours, theirs


def assert_same(ours, theirs, atol: float = 0.0):
    assert observed(ours) == observed(theirs)
    assert torch.allclose(logits(ours), logits(theirs), atol=atol, rtol=0)


CASES = {
    "device=cpu": {"device": "cpu"},
    f"device={HERE}": {"device": HERE},
    "device=cuda:0 (lm-eval's CLI default)": {"device": "cuda:0"},
    "device=cuda:7 (a GPU this machine lacks)": {"device": "cuda:7"},
    "dtype=auto": {"dtype": "auto"},
    "dtype=float32": {"dtype": "float32"},
    "dtype=float16": {"dtype": "float16"},
    "dtype=half": {"dtype": "half"},
    "batch_size=4": {"batch_size": 4},
    "batch_size='4'": {"batch_size": "4"},
    "batch_size=auto": {"batch_size": "auto", "max_batch_size": 8},
    "batch_size=auto:2": {"batch_size": "auto:2"},
    "max_length": {"max_length": 32},
    "truncation": {"truncation": True},
    "logits_cache": {"logits_cache": False},
    "add_bos_token": {"add_bos_token": True},
    "prefix_token_id": {"prefix_token_id": 3},
    "softmax_dtype": {"softmax_dtype": "float32"},
    "mixed_precision_dtype": {"mixed_precision_dtype": "bfloat16"},
    "think_end_token": {"think_end_token": "</s>"},
    "think_end_token as id": {"think_end_token": "2"},
    "enable_thinking": {"enable_thinking": True, "think_end_token": "</s>"},
    "chat_template_args": {"chat_template_args": {"reasoning": "low"}},
    "backend": {"backend": "causal"},
    "use_fast_tokenizer": {"use_fast_tokenizer": False},
    "revision": {"revision": "main"},
    "trust_remote_code": {"trust_remote_code": True},
    "attn_implementation": {"attn_implementation": "eager"},
}


@pytest.mark.parametrize("kwargs", list(CASES.values()), ids=list(CASES))
def test_each_hf_argument_does_what_hf_does(checkpoint, kwargs):
    if "device" not in kwargs:
        kwargs = {**kwargs, "device": HERE}
    if kwargs["device"].startswith("cuda") and not CUDA and kwargs["device"] == "cuda":
        pytest.skip("hf's cuda needs a GPU")
    ours, theirs = both(checkpoint / "tiny", **kwargs)
    assert_same(ours, theirs)


def test_batch_size_auto_detects_the_same_size(checkpoint):
    ours, theirs = both(checkpoint / "tiny", device=HERE, batch_size="auto", max_batch_size=4, max_length=16)
    assert ours._detect_batch_size() == theirs._detect_batch_size()


def test_the_cpu_fallback_of_the_cli_default_device(checkpoint):
    """lm-eval's command line passes device=cuda:0; hf falls back to the CPU where no GPU is, and so do we."""
    ours, theirs = both(checkpoint / "tiny", device="cuda:0", batch_size="1")
    assert str(ours.device) == str(theirs.device) == ("cuda:0" if CUDA else "cpu")
    assert hf_device("cuda:0") == ("cuda:0" if CUDA else "cpu")
    assert hf_device(None) == HERE  # hf's Python default is cuda, which fails on a CPU; ours picks what is here
    assert hf_device("cpu") == "cpu"
    assert str(CultureNeuronsLM(pretrained=str(checkpoint / "tiny")).device).startswith(HERE)


def test_subfolder(checkpoint):
    ours, theirs = both(checkpoint / "outer", subfolder="inner", device=HERE)
    assert_same(ours, theirs)
    with pytest.raises(CultureNeuronsError, match="subfolder='nowhere'"):
        CultureNeuronsLM(pretrained=str(checkpoint / "outer"), subfolder="nowhere")


def test_dtype_auto_is_the_checkpoints_dtype(checkpoint):
    ours = CultureNeuronsLM(pretrained=str(checkpoint / "tiny"), device="cpu")
    assert ours.model.dtype == torch.bfloat16  # the checkpoint's, as hf's default dtype=auto gives
    assert (
        CultureNeuronsLM(pretrained=str(checkpoint / "tiny"), device="cpu", dtype="fp32").model.dtype == torch.float32
    )


def test_parallelize_places_the_model_with_a_device_map(checkpoint, monkeypatch):
    """hf's parallelize=True: device_map=auto, max_memory from max_memory_per_gpu and max_cpu_memory."""
    import culture_neurons.integrations.lm_eval_loading as loading

    seen = []
    real = loading.load_model
    monkeypatch.setattr(loading, "load_model", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    path = str(checkpoint / "tiny")
    ours = CultureNeuronsLM(pretrained=path, parallelize=True, dtype="float32", max_cpu_memory="2GiB")
    gpus = torch.cuda.device_count()
    CultureNeuronsLM(pretrained=path, parallelize=True, dtype="float32", max_memory_per_gpu="1GiB", device_map="auto")
    assert seen[0]["device_map"] == "auto" and seen[0]["max_memory"]["cpu"] in ("2GiB", 2**31)
    assert seen[0]["offload_folder"] == "./offload"  # hf's default
    assert seen[1]["max_memory"] == ({i: "1GiB" for i in range(gpus)} or None)
    plain = CultureNeuronsLM(pretrained=path, device=HERE, dtype="float32")
    assert torch.allclose(logits(ours), logits(plain), atol=1e-5)


def test_peft_adapter_gives_hfs_logits(checkpoint, tmp_path):
    peft = pytest.importorskip("peft")
    base = tiny_model("llama", device="cpu")
    base.resize_token_embeddings(len(build_tokenizer()))  # hf resizes to the tokenizer before applying an adapter
    config = peft.LoraConfig(target_modules=["q_proj", "gate_proj"], r=4, init_lora_weights=False)
    peft.get_peft_model(base, config).save_pretrained(tmp_path / "lora")
    ours, theirs = both(checkpoint / "tiny", peft=str(tmp_path / "lora"), device=HERE, dtype="float32")
    assert torch.allclose(logits(ours), logits(theirs), atol=1e-4)
    plain = CultureNeuronsLM(pretrained=str(checkpoint / "tiny"), device=HERE, dtype="float32")
    width = logits(ours).shape[-1]  # the adapter's model was resized to the tokenizer
    assert not torch.allclose(logits(ours), logits(plain)[..., :width], atol=1e-3)  # the adapter is in
    assert ours.get_model_info()["culture_neurons"]["model"]["peft"] == str(tmp_path / "lora")


def test_delta_weights_give_hfs_logits(checkpoint, tmp_path):
    tiny_model("llama", seed=3, device="cpu").to(torch.bfloat16).save_pretrained(tmp_path / "delta")
    ours, theirs = both(checkpoint / "tiny", delta=str(tmp_path / "delta"), device=HERE)
    assert_same(ours, theirs)
    with pytest.raises(InputError, match="peft and delta"):
        CultureNeuronsLM(pretrained=str(checkpoint / "tiny"), peft="a", delta="b")


def test_every_argument_of_hf_is_declared_or_refused():
    """When lm-eval adds an argument to hf, this fails until the declaration says what it does here."""
    params = set(inspect.signature(HFLM.__init__).parameters) - {"self", "kwargs"}
    assert params <= set(BY_NAME) | set(REFUSED), sorted(params - set(BY_NAME) - set(REFUSED))
    for arg in MODEL_ARGS:
        if arg.name in params and arg.name not in ("device", "dtype", "revision", "pretrained", "tokenizer"):
            hf_default = inspect.signature(HFLM.__init__).parameters[arg.name].default
            assert arg.default == hf_default, (arg.name, arg.default, hf_default)


@pytest.mark.parametrize(
    ("given", "pattern"),
    [
        ({"nuerons": "a.json"}, r"unknown model_args key 'nuerons'.*did you mean neurons\?"),
        ({"tp_plan": "auto"}, r"tp_plan: not supported"),
        ({"autogptq": True}, r"autogptq: not supported"),
        ({"op": "zero"}, r"op='zero': op takes suppress \| enhance \| mean"),
        ({"factor": "abc"}, r"factor='abc': factor takes a finite number"),
        ({"factor": float("nan")}, r"factor=nan"),
        ({"factor": "inf"}, r"factor='inf'"),
        ({"factor": True}, r"factor=True"),
        ({"batch_size": 0}, r"batch_size=0"),
        ({"batch_size": "auto:x"}, r"batch_size='auto:x'"),
        ({"batch_size": "eight"}, r"batch_size='eight'"),
        ({"max_batch_size": -1}, r"max_batch_size=-1"),
        ({"dtype": "int8"}, r"dtype='int8'"),
        ({"softmax_dtype": "auto"}, r"softmax_dtype='auto'"),
        ({"parallelize": "maybe"}, r"parallelize='maybe': parallelize takes true or false"),
        ({"max_memory_per_gpu": "lots"}, r"max_memory_per_gpu='lots'"),
        ({"chat_template_args": "[1]"}, r"chat_template_args='\[1\]'"),
        ({"backend": "encoder"}, r"backend='encoder'"),
        ({"pretrained": " "}, r"pretrained=' '"),
    ],
)
def test_bad_model_args_are_one_line_errors_before_loading(given, pattern):
    with pytest.raises(InputError, match=pattern) as err:
        check_model_args(given)
    assert "\n" not in str(err.value)


def test_values_are_converted_as_lm_eval_parses_them():
    out = check_model_args(
        {"batch_size": "8", "factor": "2.5", "parallelize": "true", "chat_template_args": json.dumps({"a": 1})}
    )
    assert out == {"batch_size": 8, "factor": 2.5, "parallelize": True, "chat_template_args": {"a": 1}}


def test_pretrained_is_required():
    with pytest.raises(InputError, match="pretrained is required"):
        CultureNeuronsLM()


def test_help_lists_every_key_and_refused_key():
    text = model_args_help()
    for arg in MODEL_ARGS:
        assert f"    {arg.name} " in text, arg.name
    for key in REFUSED:
        assert key in text
    assert "--model culture-neurons" in text


def test_cli_help_describes_the_model_after_lm_evals_own(tmp_path):
    import subprocess
    import sys

    for argv in (["--help"], ["run", "--help"]):
        proc = subprocess.run(
            [sys.executable, "-m", "culture_neurons.integrations.lm_eval_cli", *argv],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.index("--model") < proc.stdout.index("the culture-neurons model (--model culture-neurons)")
        assert proc.stdout.endswith(model_args_help())


def test_cli_errors_are_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    import lm_eval.__main__

    from culture_neurons.integrations import lm_eval_cli

    def fails():
        check_model_args({"nuerons": "x.json"})

    monkeypatch.setattr(lm_eval.__main__, "cli_evaluate", fails)
    monkeypatch.setattr("sys.argv", ["culture-neurons-lm-eval", "--model", "culture-neurons"])
    monkeypatch.delenv("LMEVAL_LOG_LEVEL", raising=False)
    with pytest.raises(SystemExit) as done:
        lm_eval_cli.main()
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.startswith("error: unknown model_args key 'nuerons'") and err.count("\n") == 1
    monkeypatch.setenv("LMEVAL_LOG_LEVEL", "DEBUG")
    with pytest.raises(SystemExit):
        lm_eval_cli.main()
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")
    assert lm_eval_cli.debug_requested(["--verbosity", "debug"], {}) and not lm_eval_cli.debug_requested([], {})
