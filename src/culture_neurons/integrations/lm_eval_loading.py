"""Loading a model for ``--model culture-neurons`` the way lm-eval's ``hf`` model loads it.

lm-eval's ``HFLM`` ignores its loading arguments when it is handed a loaded model, and the
culture-neurons model must load through :func:`~culture_neurons.models.loading.load_model` (aliases,
``.gguf`` files, provenance). So this module applies each of ``hf``'s loading arguments itself, with
``hf``'s rules:

- ``device``: a device in ``hf``'s list for this machine (``cpu``, ``cuda``, ``mps``, ``cuda:N`` for
  N below the GPU count, ...) is used; any other, such as the ``cuda:0`` that lm-eval's command line
  passes by default, falls back to ``cuda`` when it is available and to ``cpu`` otherwise;
- ``dtype``: ``auto`` (the default) is the checkpoint's own dtype; a name is ``torch.<name>``;
- ``parallelize``: ``device_map=auto`` with ``max_memory_per_gpu`` on each GPU and ``max_cpu_memory``
  for the CPU, ``offload_folder`` for the rest; ``parallelize=none`` shards when there are several GPUs.
  Without GPUs ``hf`` passes an empty memory map, which sends every weight to disk; here the model
  stays in CPU memory;
- ``peft``: the adapter is applied (the embeddings resized to the tokenizer first, as ``hf`` does)
  and then merged, so the intervention's modules are the plain ones; ``delta``: added to the weights;
- ``subfolder`` and ``gguf_file``: the folder or file inside a local ``pretrained`` folder.

One difference: ``hf`` drops ``device_map`` unless ``parallelize`` is set; here it is honoured.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, ModelLoadError
from ..models.loading import load_model, resolve_source

log = logging.getLogger(__name__)

_SHORT = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _accelerator_count() -> int:
    """The GPU count ``hf`` builds its device list from (CUDA, else another torch accelerator)."""
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    for kind in ("npu", "xpu", "hpu"):
        module = getattr(torch, kind, None)
        available = getattr(module, "is_available", None)
        if callable(available) and available():
            return int(module.device_count())
    return torch.cuda.device_count()


def hf_device(device: str | torch.device | None) -> str:
    """The device lm-eval's ``hf`` model would use for ``device`` on this machine (see the module docstring)."""
    gpus = _accelerator_count()
    known = {"cuda", "cpu", "mps", "mps:0"} | {f"{k}:{i}" for k in ("cuda", "npu", "xpu", "hpu") for i in range(gpus)}
    text = None if device is None else str(device).strip()
    if text and text in known:
        return text
    fallback = "cuda" if torch.cuda.is_available() else "cpu"
    if text:
        log.warning("device %r is not available here; using %s, as lm-eval's hf model does", text, fallback)
    return fallback


def hf_dtype(dtype: Any, source: str, revision: str | None = None, trust_remote_code: bool = False) -> torch.dtype:
    """``auto`` (or nothing): the checkpoint's dtype (its config's, else its weights', else float32);
    a name: ``torch.<name>``, with the short names fp32, bf16 and fp16."""
    if isinstance(dtype, torch.dtype):
        return dtype
    name = "auto" if dtype is None else _SHORT.get(str(dtype), str(dtype))
    if name != "auto":
        out = getattr(torch, name, None)
        if not isinstance(out, torch.dtype):
            raise InputError(
                f"model_args dtype={dtype!r} is not a torch dtype (use auto, float32, bfloat16 or float16)"
            )
        return out
    from transformers import AutoConfig

    extra = {} if revision is None else {"revision": revision}
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code, **extra)
    except Exception as exc:  # the model load below reports the same failure with the full hint
        log.debug("no config for %s (%s); dtype auto means float32", source, exc)
        return torch.float32
    found = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(found, str):
        found = getattr(torch, found, None)
    return found if isinstance(found, torch.dtype) else _weights_dtype(source)


def _weights_dtype(source: str) -> torch.dtype:
    """The dtype of a local checkpoint's first floating-point tensor (what from_pretrained's auto reads)."""
    files = sorted(Path(source).glob("*.safetensors")) if Path(source).is_dir() else []
    if files:
        from safetensors import safe_open

        with safe_open(str(files[0]), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open is not a mapping
                tensor = fh.get_slice(key)
                dtype = getattr(
                    torch, {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}.get(tensor.get_dtype(), ""), None
                )
                if isinstance(dtype, torch.dtype):
                    return dtype
    return torch.float32


def _inside(pretrained: str, name: str, what: str) -> str:
    """``pretrained/name`` for ``subfolder`` / ``gguf_file``, which need a local folder here."""
    folder = Path(pretrained)
    if not folder.is_dir():
        raise ModelLoadError(
            f"model_args {what}={name!r} needs pretrained to be a local folder here, got {pretrained!r} "
            f"(download the repository and give its folder)"
        )
    target = folder / name
    if not target.exists():
        raise ModelLoadError(f"model_args {what}={name!r}: {target} does not exist")
    return str(target)


def _placement(args: dict[str, Any]) -> dict[str, Any]:
    """``device`` / ``device_map`` / ``max_memory`` / ``offload_folder`` for :func:`load_model`, by hf's rules."""
    parallelize = args.get("parallelize", False)
    gpus = _accelerator_count()
    if parallelize is None:  # hf: shard when there are more GPUs than processes on this machine
        parallelize = gpus > 1
    if not parallelize:
        if args.get("max_memory_per_gpu") is not None or args.get("max_cpu_memory") is not None:
            log.warning("max_memory_per_gpu and max_cpu_memory apply with parallelize=True only; ignored")
        if args.get("device_map") is not None:
            return {"device": None, "device_map": args["device_map"], "max_memory": None}
        return {"device": hf_device(args.get("device")), "device_map": None, "max_memory": None}
    max_memory: dict[Any, Any] | None = None
    if args.get("max_memory_per_gpu") is not None:
        # hf passes {} without GPUs, which offloads every weight to disk; nothing (accelerate's own limits) is sane
        max_memory = {i: args["max_memory_per_gpu"] for i in range(gpus)} or None
    elif args.get("max_cpu_memory") is not None and gpus:
        from accelerate.utils import get_max_memory

        max_memory = {k: v for k, v in get_max_memory().items() if k != "cpu"}
    if args.get("max_cpu_memory") is not None:
        max_memory = {**(max_memory or {}), "cpu": args["max_cpu_memory"]}
    return {
        "device": None,
        "device_map": args.get("device_map") or "auto",
        "max_memory": max_memory,
        "offload_folder": args.get("offload_folder", "./offload"),
    }


def _apply_peft(model: Any, tokenizer: Any, peft: str, revision: str | None) -> Any:
    try:
        from peft import PeftModel
    except ImportError:
        raise ModelLoadError(f"model_args peft={peft!r} needs the peft package: pip install peft") from None
    vocab = getattr(getattr(model.config, "text_config", model.config), "vocab_size", None)
    if vocab is not None and vocab != len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))  # as hf does, for adapters trained with added tokens
    extra = {} if revision is None else {"revision": revision}
    try:
        wrapped = PeftModel.from_pretrained(model, peft, **extra)
    except Exception as exc:
        raise ModelLoadError(f"could not load the PEFT adapter {peft!r}: {str(exc).strip().splitlines()[0]}") from exc
    return wrapped.merge_and_unload()


def _apply_delta(model: Any, delta: str, dtype: torch.dtype, revision: str | None, trust: bool) -> None:
    from transformers import AutoModelForCausalLM

    extra = {} if revision is None else {"revision": revision}
    try:
        other = AutoModelForCausalLM.from_pretrained(delta, dtype=dtype, trust_remote_code=trust, **extra)
    except Exception as exc:
        raise ModelLoadError(f"could not load the delta weights {delta!r}: {str(exc).strip().splitlines()[0]}") from exc
    weights = other.state_dict()
    with torch.no_grad():
        for name, param in model.state_dict().items():
            if name not in weights:
                raise ModelLoadError(f"delta weights {delta!r} lack the layer {name}")
            if weights[name].shape != param.shape:
                raise ModelLoadError(
                    f"delta weights {delta!r}: {name} is {tuple(weights[name].shape)}, the model's {tuple(param.shape)}"
                )
            param.data += weights[name].to(param.device, param.dtype)


def load_for_lm_eval(args: dict[str, Any]) -> tuple[Any, str]:
    """Load ``args["pretrained"]`` with hf's loading arguments (checked by ``check_model_args``).

    Returns the model and the tokenizer source (a name or folder) for HFLM to load the tokenizer from,
    with its own tokenizer arguments (``use_fast_tokenizer``, ``add_bos_token``, ...).
    """
    pretrained = str(args["pretrained"])
    if args.get("peft") and args.get("delta"):
        raise InputError("model_args peft and delta cannot be used together (as in lm-eval's hf model)")
    if args.get("subfolder"):
        pretrained = _inside(pretrained, args["subfolder"], "subfolder")
    if args.get("gguf_file"):
        pretrained = _inside(pretrained, args["gguf_file"], "gguf_file")
    revision = args.get("revision")
    trust = bool(args.get("trust_remote_code", False))
    source, _ = resolve_source(pretrained)
    dtype = hf_dtype(args.get("dtype"), source, revision, trust)
    extra: dict[str, Any] = {}
    if trust:
        extra["trust_remote_code"] = True
    if args.get("attn_implementation") is not None:
        extra["attn_implementation"] = args["attn_implementation"]
    placement = _placement(args)
    if "offload_folder" in placement:
        extra["offload_folder"] = placement.pop("offload_folder")
    model, tokenizer = load_model(pretrained, dtype=dtype, revision=revision, progress=False, **placement, **extra)
    provenance = dict(getattr(model, "culture_neurons_provenance", {}) or {})
    if args.get("peft"):
        model = _apply_peft(model, tokenizer, args["peft"], revision)
        provenance["peft"] = args["peft"]
    if args.get("delta"):
        _apply_delta(model, args["delta"], dtype, revision, trust)
        provenance["delta"] = args["delta"]
    model.culture_neurons_provenance = provenance
    model.eval()
    tokenizer_source = resolve_source(args["tokenizer"])[0] if args.get("tokenizer") else source
    return model, tokenizer_source
