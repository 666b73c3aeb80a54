"""The model arguments of ``--model culture-neurons``, declared once.

:data:`MODEL_ARGS` names every ``--model_args`` key the model takes: the intervention's own, the
loading arguments of lm-eval's ``hf`` model (applied by :mod:`.lm_eval_loading` the way ``hf``
applies them) and the evaluation arguments handed to lm-eval's ``HFLM`` unchanged. The same table
checks and converts the values (:func:`check_model_args`: an unknown key, a wrong type or a value
out of range is one :class:`~culture_neurons.errors.InputError` naming the key and what it accepts)
and writes the help that ``culture-neurons-lm-eval --help`` prints (:func:`model_args_help`), so the
two cannot drift apart. Nothing here imports lm-eval.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

OURS = "intervention (culture-neurons)"
LOADING = "loading (lm-eval's hf names, applied as hf applies them)"
EVALUATION = "evaluation (handed to lm-eval's HFLM unchanged)"
GROUPS = (OURS, LOADING, EVALUATION)

DTYPE_NAMES = ("auto", "float32", "float", "bfloat16", "float16", "half", "float64", "double", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class ModelArg:
    """One ``--model_args`` key: its type (``kind``), default, one line of help and its group."""

    name: str
    kind: str
    default: Any
    help: str
    group: str
    choices: tuple[str, ...] = ()

    def accepts(self) -> str:
        """What the key accepts, in words (for errors and the help)."""
        words = {
            "str": "a string",
            "path": "a file or folder",
            "bool": "true or false",
            "int": "a whole number >= 1",
            "int0": "a whole number >= 0",
            "float": "a finite number",
            "choice": " | ".join(self.choices),
            "dtype": " | ".join(DTYPE_NAMES[:7]),
            "tdtype": " | ".join(DTYPE_NAMES[1:7]),
            "batch": "a whole number >= 1, auto or auto:N",
            "memory": "a size such as 10GiB, or bytes",
            "json": "a JSON object",
            "token": "a token string or id",
            "device": "cpu | cuda | cuda:N | mps | npu:N | xpu:N | hpu:N",
        }[self.kind]
        return f"{words} or none" if self.default is None and self.kind not in ("path", "str") else words


def _arg(name: str, kind: str, default: Any, help: str, group: str, choices: tuple[str, ...] = ()) -> ModelArg:
    return ModelArg(name, kind, default, help, group, choices)


MODEL_ARGS: tuple[ModelArg, ...] = (
    _arg("pretrained", "str", None, "hub id, local folder, .gguf file or culture-neurons alias (required)", LOADING),
    _arg("neurons", "path", None, "a NeuronSet file, or several joined with '+' (their union); none: unchanged", OURS),
    _arg(
        "op",
        "choice",
        "suppress",
        "suppress (set to 0), enhance (multiply by factor), mean (channel mean)",
        OURS,
        ("suppress", "enhance", "mean"),
    ),
    _arg("factor", "float", 2.0, "the multiplier of op=enhance", OURS),
    _arg("means", "path", None, "channel-means file of op=mean (default <first set>.means.safetensors)", OURS),
    _arg("site_map", "path", None, "a site-map TOML for an architecture culture-neurons does not know", OURS),
    _arg("tokenizer", "str", None, "tokenizer name or folder (default: the model's own)", LOADING),
    _arg("revision", "str", None, "hub branch, tag or commit of the model and its tokenizer", LOADING),
    _arg("subfolder", "str", "", "the model's folder inside a local pretrained folder", LOADING),
    _arg("dtype", "dtype", "auto", "weight dtype; auto: the checkpoint's own", LOADING),
    _arg(
        "device",
        "device",
        None,
        "where the model runs; one this machine lacks (lm-eval's default cuda:0 on a CPU) falls back to "
        "cuda if available, else cpu",
        LOADING,
    ),
    _arg("device_map", "str", None, "a from_pretrained device map (auto shards over GPUs, then CPU)", LOADING),
    _arg("parallelize", "bool", False, "shard the model over the GPUs (device_map=auto)", LOADING),
    _arg("max_memory_per_gpu", "memory", None, "with parallelize: the memory limit of each GPU", LOADING),
    _arg("max_cpu_memory", "memory", None, "with parallelize: the CPU memory limit", LOADING),
    _arg("offload_folder", "path", "./offload", "with parallelize: where weights that fit nowhere go", LOADING),
    _arg("trust_remote_code", "bool", False, "run the model repository's own code", LOADING),
    _arg("gguf_file", "str", None, "a .gguf file inside the pretrained folder", LOADING),
    _arg("peft", "str", None, "a PEFT (LoRA) adapter, merged into the weights before the intervention", LOADING),
    _arg("delta", "str", None, "delta weights added to the pretrained weights", LOADING),
    _arg("attn_implementation", "str", None, "from_pretrained's attention kernel (eager, sdpa, ...)", LOADING),
    _arg(
        "backend",
        "choice",
        "default",
        "default (from the config), causal or seq2seq",
        EVALUATION,
        ("default", "causal", "seq2seq"),
    ),
    _arg("batch_size", "batch", 1, "requests per forward pass; auto finds the largest that fits", EVALUATION),
    _arg("max_batch_size", "int", 64, "the upper bound of batch_size=auto", EVALUATION),
    _arg("max_length", "int", None, "context length in tokens (default: from the model config)", EVALUATION),
    _arg("truncation", "bool", False, "truncate inputs longer than max_length", EVALUATION),
    _arg("logits_cache", "bool", True, "reuse logits of requests that share a context", EVALUATION),
    _arg("softmax_dtype", "tdtype", None, "dtype of the log-softmax", EVALUATION),
    _arg("mixed_precision_dtype", "tdtype", None, "autocast dtype of the forward pass", EVALUATION),
    _arg("use_fast_tokenizer", "bool", True, "load the fast (Rust) tokenizer", EVALUATION),
    _arg("add_bos_token", "bool", None, "prepend the BOS token (default: the tokenizer's own rule)", EVALUATION),
    _arg("prefix_token_id", "int0", None, "token before an empty context (default BOS, else EOS)", EVALUATION),
    _arg("think_end_token", "token", None, "end of a reasoning trace; the answer is what follows", EVALUATION),
    _arg("enable_thinking", "bool", None, "the chat template's enable_thinking", EVALUATION),
    _arg("chat_template_args", "json", None, "further chat-template arguments", EVALUATION),
)

BY_NAME: dict[str, ModelArg] = {a.name: a for a in MODEL_ARGS}
OBJECTS = frozenset({"pretrained", "tokenizer", "neurons", "means"})

# lm-eval's hf model takes these too; the intervention cannot work with them, so they are refused.
REFUSED: dict[str, str] = {
    "tp_plan": "tensor parallelism shards each projection, so a channel index no longer names one output",
    "autogptq": "AutoGPTQ kernels replace the Linear modules whose outputs the intervention changes",
    "gptqmodel": "GPTQModel kernels replace the Linear modules whose outputs the intervention changes",
}


def _fail(arg: ModelArg, value: Any) -> InputError:
    return InputError(f"model_args {arg.name}={value!r}: {arg.name} takes {arg.accepts()}")


def _bool(arg: ModelArg, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise _fail(arg, value)


def _int(arg: ModelArg, value: Any, low: int = 1) -> int:
    if isinstance(value, bool):
        raise _fail(arg, value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("+").isdigit():
        value = int(value)
    if not isinstance(value, int) or value < low:
        raise _fail(arg, value)
    return value


def _float(arg: ModelArg, value: Any) -> float:
    if isinstance(value, bool):
        raise _fail(arg, value)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise _fail(arg, value) from None
    if not math.isfinite(out):
        raise _fail(arg, value)
    return out


def _choice(arg: ModelArg, value: Any) -> str:
    text = str(value).strip().lower()
    if text not in arg.choices:
        raise _fail(arg, value)
    return text


def _dtype(arg: ModelArg, value: Any) -> Any:
    import torch

    if isinstance(value, torch.dtype):
        return value
    text = str(value).strip()
    if text in DTYPE_NAMES:
        return text
    if isinstance(getattr(torch, text, None), torch.dtype) and getattr(torch, text).is_floating_point:
        return text  # lm-eval's hf takes any torch dtype name (torch.<name>)
    raise _fail(arg, value)


def _fail_auto(arg: ModelArg, value: Any) -> Any:
    if str(value).strip() == "auto":  # a compute dtype, not a checkpoint's: auto means nothing here
        raise _fail(arg, value)
    return _dtype(arg, value)


def _batch(arg: ModelArg, value: Any) -> int | str:
    text = str(value).strip()
    if text.startswith("auto"):
        if text == "auto":
            return text
        head, sep, times = text.partition(":")
        try:
            ok = head == "auto" and bool(sep) and math.isfinite(float(times)) and float(times) > 0
        except ValueError:
            ok = False
        if not ok:
            raise _fail(arg, value)
        return text
    return _int(arg, value)


def _memory(arg: ModelArg, value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    text = str(value).strip()
    digits = text.rstrip("BbKkMmGgTtIi")
    try:
        ok = float(digits) > 0 and text != digits and text[len(digits) :].upper() in _SIZES
    except ValueError:
        ok = False
    if not ok:
        raise _fail(arg, value)
    return text


_SIZES = ("B", "KB", "MB", "GB", "TB", "KIB", "MIB", "GIB", "TIB")


def _json(arg: ModelArg, value: Any) -> dict:
    if isinstance(value, Mapping):
        return dict(value)
    try:
        out = json.loads(str(value))
    except ValueError:
        raise _fail(arg, value) from None
    if not isinstance(out, dict):
        raise _fail(arg, value)
    return out


def _token(arg: ModelArg, value: Any) -> str | int:
    if isinstance(value, bool):
        raise _fail(arg, value)
    if isinstance(value, int):
        return _int(arg, value, low=0)
    return str(value)


def _text(arg: ModelArg, value: Any) -> str:
    text = str(value).strip()
    if not text and arg.default is None:
        raise _fail(arg, value)
    return text


_CONVERT: dict[str, Callable[[ModelArg, Any], Any]] = {
    "str": _text,
    "path": lambda arg, v: str(v).strip(),
    "bool": _bool,
    "int": _int,
    "int0": lambda arg, v: _int(arg, v, low=0),
    "float": _float,
    "choice": _choice,
    "dtype": _dtype,
    "tdtype": lambda arg, v: _fail_auto(arg, v),
    "batch": _batch,
    "memory": _memory,
    "json": _json,
    "token": _token,
    "device": lambda arg, v: str(v).strip(),
}


def unknown_key_error(key: str) -> InputError:
    """The one-line error for a key the model does not take, with the nearest declared key."""
    if key in REFUSED:
        return InputError(f"model_args {key}: not supported by --model culture-neurons ({REFUSED[key]})")
    near = difflib.get_close_matches(key, list(BY_NAME), n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]}?" if near else ""
    return InputError(
        f"unknown model_args key {key!r} for --model culture-neurons{hint} "
        "(culture-neurons-lm-eval --help lists every key)"
    )


def check_model_args(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` converted by their declarations; ``None`` stays ``None`` (the default).

    Raises :class:`InputError` for an unknown or refused key and for a value its key does not accept.
    The keys in :data:`OBJECTS` may also hold objects (from Python: a loaded model or tokenizer, a
    NeuronSet or a list of them, a means mapping); those pass unchanged.
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        arg = BY_NAME.get(key)
        if arg is None:
            raise unknown_key_error(key)
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if value is None or (key in OBJECTS and not isinstance(value, str)):
            out[key] = value
            continue
        out[key] = _CONVERT[arg.kind](arg, value)
    return out


def model_args_help(width: int = 100) -> str:
    """The help section for ``--model culture-neurons``: every declared key, grouped, with its default."""
    lines = [
        "the culture-neurons model (--model culture-neurons):",
        "  lm-eval's hf model with neurons suppressed, enhanced or mean-ablated around every forward pass",
        "  and generation. Give its arguments as --model_args KEY=VALUE,KEY=VALUE; lm-eval's --device and",
        "  --batch_size fill device and batch_size unless model_args names them.",
        "  example: --model culture-neurons --model_args pretrained=MODEL,neurons=general.json,op=suppress",
    ]
    name_width = max(len(a.name) for a in MODEL_ARGS) + 2
    for group in GROUPS:
        lines += ["", f"  model_args, {group}:"]
        for arg in (a for a in MODEL_ARGS if a.group == group):
            shown = str(arg.default).lower() if isinstance(arg.default, bool) else arg.default
            default = "" if arg.default in (None, "") else f" (default {shown})"
            accepts = "" if arg.kind in ("str", "path") else f"; {arg.accepts()}"
            text = f"{arg.help}{accepts}{default}"
            wrapped = textwrap.wrap(text, width=width - name_width - 4) or [""]
            lines.append(f"    {arg.name.ljust(name_width)}{wrapped[0]}")
            lines += [f"    {' ' * name_width}{more}" for more in wrapped[1:]]
    refused = ", ".join(REFUSED)
    lines += ["", f"  not supported (the intervention needs plain Linear modules): {refused}"]
    lines += ["  errors are one line (error: ...); LMEVAL_LOG_LEVEL=DEBUG shows the traceback"]
    return "\n".join(lines) + "\n"
