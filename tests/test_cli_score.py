"""``culture-neurons score`` end to end on a tiny saved model, including every bad-input path."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from culture_neurons import ScoreTable
from culture_neurons.cli import cli
from tests.tiny import build_tokenizer, make_examples, tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama").save_pretrained(path)
    build_tokenizer().save_pretrained(path)
    return path


def write_jsonl(path, records, newline="\n", bom=False):
    text = newline.join(json.dumps(r) for r in records) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def records(n=5):
    return [e.to_dict() for e in make_examples(n)]


def test_score_writes_a_table(model_dir, tmp_path):
    examples = write_jsonl(tmp_path / "e.jsonl", records())
    out = tmp_path / "out" / "s.safetensors"
    result = run("score", "--model", model_dir, "--examples", examples, "--out", out, "--batch-size", 2, "-q")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "5 examples" in result.output
    table = ScoreTable.load(out)
    assert table.groups == ["Japan", "Mexico", "Spain"] and table.num_examples == 5
    assert table.meta["options"]["batch_size"] == 2


def test_bom_and_crlf_are_accepted_and_control_clamps(model_dir, tmp_path):
    examples = write_jsonl(tmp_path / "e.jsonl", records(), newline="\r\n", bom=True)
    out = tmp_path / "c.safetensors"
    result = run("score", "-m", model_dir, "-e", examples, "-o", out, "--control", "-q")
    assert result.exit_code == 0, result.output
    assert all((t >= 0).all() for t in ScoreTable.load(out).scores.values())


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda lines: lines[:2] + ['{"id": "x", "prompt": "broken'] + lines[2:], r"e.jsonl:3: malformed JSON"),
        (
            lambda lines: lines + [json.dumps({"id": "y", "prompt": "Q?", "group": "Japan"})],
            r"e.jsonl:6: missing required field\(s\) answer",
        ),
        (
            lambda lines: lines + [json.dumps({"id": "z", "prompt": "Q?", "answer": "", "group": "Japan"})],
            r"example 'z': the answer is empty",
        ),
        (lambda lines: lines + [lines[0]], r"e.jsonl:6: duplicate id 'ex0'"),
        (
            lambda lines: lines + [json.dumps({"id": "w", "prompt": 3, "answer": "A", "group": "Japan"})],
            r"e.jsonl:6: field 'prompt' must be a string",
        ),
    ],
)
def test_bad_examples_give_one_line_errors_and_no_output(model_dir, tmp_path, mutate, message):
    lines = [json.dumps(r) for r in records()]
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(mutate(lines)) + "\n")
    out = tmp_path / "s.safetensors"
    result = run("score", "-m", model_dir, "-e", path, "-o", out, "-q")
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ")
    import re

    assert re.search(message, last), last
    assert "Traceback" not in result.output
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["e.jsonl"]


def test_nan_weights_abort_without_touching_the_old_table(tmp_path):
    model = tiny_model("llama")
    model.model.layers[0].mlp.up_proj.weight.data[3, 3] = float("nan")
    path = tmp_path / "nan-model"
    model.save_pretrained(path)
    build_tokenizer().save_pretrained(path)
    examples = write_jsonl(tmp_path / "e.jsonl", records(3))
    out = tmp_path / "s.safetensors"
    out.write_bytes(b"previous result")
    result = run("score", "-m", path, "-e", examples, "-o", out, "-q")
    assert result.exit_code == 2 and "NaN" in result.output and "ex0" in result.output
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.jsonl", "nan-model", "s.safetensors"]


def _bloom_dir(tmp_path):
    import transformers as tf

    torch.manual_seed(0)
    config = tf.BloomConfig(
        vocab_size=320, hidden_size=64, n_layer=2, n_head=4, pad_token_id=0, bos_token_id=1, eos_token_id=2
    )
    path = tmp_path / "bloom"
    tf.BloomForCausalLM(config).save_pretrained(path)
    build_tokenizer().save_pretrained(path)
    return path


def test_unknown_architecture_then_site_map(tmp_path):
    model = _bloom_dir(tmp_path)
    examples = write_jsonl(tmp_path / "e.jsonl", records(3))
    out = tmp_path / "s.safetensors"
    result = run("score", "-m", model, "-e", examples, "-o", out, "-q")
    assert result.exit_code == 2
    assert "no adapter knows this model" in result.output and "bloom" in result.output and "--site-map" in result.output
    assert not out.exists()
    # Bloom fuses q, k, v per head like GPT-NeoX; a site map describes that without code changes.
    site_map = tmp_path / "bloom.toml"
    site_map.write_text(
        'layers = "transformer.h"\n'
        '[sites."mlp.in"]\nmodule = "mlp.dense_h_to_4h"\n'
        + "".join(
            f'[sites."attn.{n}"]\nmodule = "self_attention.query_key_value"\n'
            f'split = {{ layout = "heads", sizes = ["head_dim", "head_dim", "head_dim"], part = {i} }}\n'
            for i, n in enumerate("qkv")
        )
    )
    result = run("score", "-m", model, "-e", examples, "-o", out, "--site-map", site_map, "-q")
    assert result.exit_code == 0, result.output
    assert ScoreTable.load(out).widths == {"mlp.in": 256, "attn.q": 64, "attn.k": 64, "attn.v": 64}


def test_debug_shows_traceback(model_dir, tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text("not json\n")
    result = run("--debug", "score", "-m", model_dir, "-e", path, "-o", tmp_path / "s.safetensors")
    assert result.exit_code == 2 and "Traceback" in result.output


def test_missing_model_is_a_clear_error(tmp_path):
    examples = write_jsonl(tmp_path / "e.jsonl", records(2))
    result = run("score", "-m", tmp_path / "no-such-model", "-e", examples, "-o", tmp_path / "s.safetensors")
    assert result.exit_code == 2 and "could not load model" in result.output


def test_unwritable_output_fails_before_loading(tmp_path):
    import os

    if os.geteuid() == 0:
        out_dir = tmp_path / "file-not-dir"
        out_dir.write_text("")
        out = out_dir / "s.safetensors"  # a path under a regular file can never be created, even by root
    else:
        out_dir = tmp_path / "ro"
        out_dir.mkdir()
        out_dir.chmod(0o500)
        out = out_dir / "s.safetensors"
    examples = write_jsonl(tmp_path / "e.jsonl", records(2))
    result = run("score", "-m", "does-not-matter", "-e", examples, "-o", out)
    assert result.exit_code == 2 and "output folder" in result.output


# -- issue 16: caps, the loaded-model line, the chance warning -------------------------------------


def lettered(n=8):
    """Four-option letter questions (chance 1/4) whose gold letter cycles A-D."""
    out = []
    for e in make_examples(n):
        d = e.to_dict()
        d.update(labels=["A", "B", "C", "D"], options=["Japan", "Mexico", "Spain", "Iran"])
        out.append(d)
    return out


def test_caps_draw_the_same_sample_as_the_config(model_dir, tmp_path):
    from culture_neurons.data.example import read_examples
    from culture_neurons.data.sampling import cap_examples

    examples = write_jsonl(tmp_path / "e.jsonl", records(12))
    out = tmp_path / "s.safetensors"
    result = run(
        "score", "-m", model_dir, "-e", examples, "-o", out, "-q", "--max-per-group", 2, "--limit", 5, "--seed", 3
    )
    assert result.exit_code == 0, result.output
    want = [e.id for e in cap_examples(read_examples(examples), max_per_group=2, limit=5, seed=3)]
    assert ScoreTable.load(out).meta["example_ids"] == want and len(want) == 5


def test_the_loaded_model_line_is_logged(model_dir, tmp_path, caplog):
    import logging

    examples = write_jsonl(tmp_path / "e.jsonl", records(3))
    with caplog.at_level(logging.INFO, logger="culture_neurons"):
        result = run("score", "-m", model_dir, "-e", examples, "-o", tmp_path / "s.safetensors", "-q")
    assert result.exit_code == 0, result.output
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded ")]
    assert len(lines) == 1 and "llama" in lines[0] and "params" in lines[0], lines


def test_a_model_at_chance_gets_a_warning_with_the_fix(model_dir, tmp_path):
    examples = write_jsonl(tmp_path / "e.jsonl", lettered())
    out = tmp_path / "s.safetensors"
    result = run("score", "-m", model_dir, "-e", examples, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "below the chance level 0.250" in warning[0] and "--target choice" in warning[0], (
        result.output
    )
    assert ScoreTable.load(out).meta["chance_level"] == 0.25


def _warnings(output):
    return [line for line in output.splitlines() if line.startswith("warning:")]


def test_at_chance_with_the_choice_target_the_hint_does_not_suggest_it(model_dir, tmp_path):
    examples = write_jsonl(tmp_path / "e.jsonl", lettered())
    result = run("score", "-m", model_dir, "-e", examples, "-o", tmp_path / "s.safetensors", "-q", "--target", "choice")
    assert result.exit_code == 0, result.output
    warning = _warnings(result.output)
    assert len(warning) == 1 and "chance level 0.250" in warning[0], result.output
    assert "--target choice" not in warning[0] and "even by option likelihood" in warning[0]


def test_a_control_set_at_chance_gets_no_warning(model_dir, tmp_path):
    examples = write_jsonl(tmp_path / "e.jsonl", lettered())
    out = tmp_path / "s.safetensors"
    result = run("score", "-m", model_dir, "-e", examples, "-o", out, "-q", "--control")
    assert result.exit_code == 0, result.output
    assert _warnings(result.output) == [] and "chance level" not in result.output, result.output
    assert ScoreTable.load(out).meta["chance_level"] == 0.25  # at chance all the same: only the warning is left out


def _trained_to_answer(path, examples):
    """A tiny Llama trained for a few hundred steps to give each example's letter after its prompt."""
    from culture_neurons.attribution.batching import target_rows

    tok = build_tokenizer()
    model = tiny_model("llama")
    rows = [r[0] for r in target_rows(tok, examples, "label", True)]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(40):
        loss = 0.0
        for row in rows:
            ids = torch.tensor([row.input_ids])
            logits = model(ids).logits[0, row.prompt_len - 1]
            loss = loss + torch.nn.functional.cross_entropy(logits[None], torch.tensor([row.targets[0]]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_a_model_that_answers_gets_no_warning(tmp_path):
    from culture_neurons.data.example import Example

    recs = lettered()
    model = _trained_to_answer(tmp_path / "trained", [Example.from_dict(r) for r in recs])
    examples = write_jsonl(tmp_path / "e.jsonl", recs)
    result = run("score", "-m", model, "-e", examples, "-o", tmp_path / "s.safetensors", "-q")
    assert result.exit_code == 0, result.output
    mean_p = float(result.output.split("mean target probability ")[1].split()[0])
    assert mean_p > 0.6, result.output
    assert "warning:" not in result.output


@pytest.mark.parametrize("command", ["score", "evaluate"])
def test_revision_reaches_load_model(tmp_path, command):
    # an alias has no hub revisions, so a --revision that reached load_model is refused in one line
    examples = write_jsonl(tmp_path / "e.jsonl", records())
    out = tmp_path / "s.safetensors"
    args = ["-e", examples, "-o", out] if command == "score" else ["-b", examples, "-o", tmp_path]
    result = run(command, "-m", "smollm2-135m-instruct", "--revision", "v1", *args, "-q")
    assert result.exit_code != 0
    assert "revision 'v1' applies to hub ids only, not to 'smollm2-135m-instruct'" in result.output
