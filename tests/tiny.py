"""Tiny random models, a tiny tokenizer and examples for tests (no downloads)."""

from __future__ import annotations

import torch

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CORPUS = [
    "Which country is known for sushi? A. Japan B. Mexico C. Spain D. Iran Answer: A",
    "What do people in Spain eat at noon? Options A B C D. The answer is B",
    "In Mexico, a common breakfast is chilaquiles. Korea Indonesia China UK USA",
    "Pick the option that fits best. 1 2 3 4 5 6 7 8 9 10",
]


def build_tokenizer(chat_template: bool = True):
    """A small byte-level BPE tokenizer trained on a few sentences, wrapped as a HF fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    return fast


DEFAULT_DEVICE = "cpu"  # conftest sets this from --device
VOCAB = 320  # > tokenizer size, like real models whose embedding tables are padded


def tiny_config(family: str):
    """Config of a 2-layer random model of ``family`` small enough for a unit test."""
    import transformers as tf

    common = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        initializer_range=0.2,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        rms_norm_eps=1e-6,
    )
    if family == "llama":
        return tf.LlamaConfig(**common)
    if family == "mistral":
        return tf.MistralConfig(**common)
    if family == "qwen2":
        return tf.Qwen2Config(**common)
    if family == "qwen3":
        return tf.Qwen3Config(**common, head_dim=16)
    if family == "gemma2":
        return tf.Gemma2Config(**common, head_dim=16, sliding_window=16)
    if family == "gemma3_text":
        return tf.Gemma3TextConfig(**common, head_dim=16, sliding_window=16)
    if family == "gemma3":
        text = tf.Gemma3TextConfig(**common, head_dim=16, sliding_window=16)
        vision = tf.SiglipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
        return tf.Gemma3Config(
            text_config=text,
            vision_config=vision,
            mm_tokens_per_image=4,
            image_token_index=VOCAB - 1,
            boi_token_index=VOCAB - 2,
            eoi_token_index=VOCAB - 3,
        )
    if family == "phi3":
        return tf.Phi3Config(**common)
    if family == "gpt2":
        return tf.GPT2Config(
            vocab_size=VOCAB,
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_positions=128,
            initializer_range=0.2,
            bos_token_id=1,
            eos_token_id=2,
        )
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(
            vocab_size=VOCAB,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            rotary_pct=0.25,
            max_position_embeddings=128,
            initializer_range=0.2,
            bos_token_id=1,
            eos_token_id=2,
        )
    raise KeyError(family)


FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "gemma3", "phi3", "gpt2", "gpt_neox"]


def tiny_model(family: str, seed: int = 0, device: str | None = None, attn: str | None = None):
    import transformers as tf

    torch.manual_seed(seed)
    config = tiny_config(family)
    if attn:
        config._attn_implementation = attn
    cls = tf.Gemma3ForConditionalGeneration if family == "gemma3" else tf.AutoModelForCausalLM
    model = cls(config) if family == "gemma3" else cls.from_config(config)
    return model.to(device or DEFAULT_DEVICE).eval()


def make_examples(n: int = 7, groups=("Japan", "Mexico", "Spain")):
    """Examples with varied prompt lengths, so batches need padding."""
    from culture_neurons.data import Example

    words = ["sushi", "tacos", "paella", "tea", "rice", "bread", "noon", "breakfast"]
    return [
        Example(
            id=f"ex{i}",
            prompt=f"Which country eats {' '.join(words[: 1 + (i * 3) % 8])}? Answer:",
            answer=" " + "ABCD"[i % 4],
            group=groups[i % len(groups)],
        )
        for i in range(n)
    ]


def assert_close(table, reference, rtol=1e-5):
    """Every site of ``table`` equals ``reference`` within ``rtol`` of the reference's largest magnitude."""
    for site, ref in reference.items():
        got = table.scores[site].double()
        scale = ref.abs().max().item()
        assert scale > 0
        err = (got - ref).abs().max().item() / scale
        assert err < rtol, f"{site}: relative error {err:.2e}"
