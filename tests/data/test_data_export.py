"""The registry, rendering, export (API and CLI), hub fallback, label sanity and bad input."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from click.testing import CliRunner

import culture_neurons.data.hub as hub
from culture_neurons.cli import cli
from culture_neurons.data import (
    Example,
    build_examples,
    export_examples,
    get_benchmark,
    label_problems,
    list_benchmarks,
    load_items,
    read_examples,
    resolve_country,
)
from culture_neurons.data.countries import TARGET_COUNTRIES, resolve_countries
from culture_neurons.data.templates import Item, Template, render_item, shuffled_order
from culture_neurons.errors import InputError

EXPECTED = {
    "blend",
    "blend-control",
    "blend-saq",
    "culturalbench-easy",
    "culturalbench-hard",
    "normad",
    "worldvaluesbench",
    "countryrc",
    "commonsenseqa",
    "qnli",
    "mrpc",
    "arc-easy",
    "arc-challenge",
    "piqa",
    "openbookqa",
    "hellaswag",
    "winogrande",
    "boolq",
    "demo-culture",
    "demo-control",
    "demo-nlu",
    "demo-nlu-id",
}


def test_registry_has_every_benchmark():
    names = {b.name for b in list_benchmarks()}
    assert names == EXPECTED
    for b in list_benchmarks():
        assert b.templates and (b.files or b.builtin)
    assert len(get_benchmark("blend").templates) == 4  # the paper averaged over 4 templates
    with pytest.raises(InputError, match="unknown benchmark 'nope'; known: blend"):
        get_benchmark("nope")


@pytest.mark.parametrize(
    "spelling, bench, key",
    [
        ("US", "blend", "USA"),
        ("South_Korea", "blend", "South Korea"),
        ("United States", "culturalbench", "USA"),
        ("united_states_of_america", "normad", "USA"),
        ("Great Britain", "worldvaluesbench", "UK"),
        ("UK", None, "UK"),
        ("Czechia", None, "Czech Republic"),
        ("hong kong sar", None, "Hong Kong"),
    ],
)
def test_country_aliases(spelling, bench, key):
    assert resolve_country(spelling, bench) == key


def test_unknown_country_is_an_error():
    with pytest.raises(InputError, match="f.csv:3: unknown country 'Mexiko'; did you mean 'Mexico'"):
        resolve_country("Mexiko", where="f.csv:3")
    assert resolve_countries("targets, Greece") == TARGET_COUNTRIES + ("Greece",)


def test_shuffle_is_a_stable_permutation():
    a = shuffled_order("item|slot0", 4)
    assert sorted(a) == [0, 1, 2, 3] and a == shuffled_order("item|slot0", 4)
    orders = {tuple(shuffled_order(f"item{i}|slot0", 4)) for i in range(50)}
    assert len(orders) > 10


def test_render_letters_numbers_and_gold():
    item = Item(
        id="x", group="Spain", split="heldout", question="Q?", options=("right", "w1", "w2", "w3"), answer_index=0
    )
    t = Template("t", "{question} [{country}] {label_list}\n{options}", answer_prefix='{"a":"', slot=0)
    for style in ("letters", "numbers"):
        ex = render_item(item, t, "bench", style)
        assert ex.options[ex.labels.index(ex.answer)] == "right"
        assert ex.labels == (("A", "B", "C", "D") if style == "letters" else ("1", "2", "3", "4"))
        assert ex.prompt.endswith('\n\n{"a":"') and "[Spain]" in ex.prompt
        assert not ex.chat_template_applied


def test_chat_template_and_label_check(tiny_chat_tokenizer):
    exs = build_examples("demo-culture", tokenizer=tiny_chat_tokenizer, templates="all")
    assert all(ex.chat_template_applied for ex in exs)
    assert exs[0].prompt.startswith("<|user|>") and exs[0].prompt.endswith('<|assistant|>{"answer_choice":"')
    assert label_problems(exs, tiny_chat_tokenizer) == []


def test_label_check_catches_bad_tokenizers(tmp_path, make_tokenizer):
    exs = build_examples("demo-culture", countries="Spain")
    no_letters = make_tokenizer(tmp_path / "a", ["answer", "{", "}"])  # every label becomes [UNK]
    problems = label_problems(exs, no_letters)
    assert (
        problems
        and "do not all start with different tokens" in problems[0]
        and problems[0].startswith("example demo-culture/")
    )
    # a prompt ending in a space lets the label merge with it in a BPE-style tokenizer
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "Answer": 1, ":": 2, " ": 3, " A": 4, " B": 5, "A": 6, "B": 7}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\s?\w+|[^\w\s]|\s"), behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    ex = Example(id="e", prompt="Answer: ", answer="A", group="g", options=("x", "y"), labels=("A", "B"))
    assert "merge with the end of the prompt" in label_problems([ex], fast)[0]


def test_export_is_deterministic_and_readable(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    s1 = export_examples("demo-culture", a, split="identification", templates="all")
    export_examples("demo-culture", b, split="identification", templates="all")
    assert a.read_bytes() == b.read_bytes()
    back = read_examples(a)
    assert len(back) == s1.n_examples == 4 * sum(sum(v.values()) for v in s1.counts.values()) // 4
    assert {ex.split for ex in back} == {"identification"}
    assert Counter(ex.template_id for ex in back) == {f"mcq{i}": s1.n_examples // 4 for i in range(1, 5)}
    assert s1.counts["Spain"] == {"identification": 25 * 4}


def test_export_does_not_depend_on_the_hash_seed(tmp_path):
    import os
    import subprocess
    import sys

    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"rc{seed}.jsonl"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        code = (
            "from culture_neurons.data import export_examples as e; "
            f"e('countryrc', {str(out)!r}, templates='all'); e('demo-culture', {str(out)!r} + '.2', templates='all')"
        )
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        outs.append(out.read_bytes() + (tmp_path / f"rc{seed}.jsonl.2").read_bytes())
    assert outs[0] == outs[1]


def test_cli_list_shows_every_benchmarks_template_ids():
    result = CliRunner().invoke(cli, ["data", "list"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines()}
    for b in list_benchmarks():
        ids = [t.id for t in b.templates] + [t.id for t in b.extra_templates]
        assert all(i in rows[b.name] for i in ids), rows[b.name]
    assert "+cloze" in rows["blend"] and "cloze" not in rows["blend-saq"]


def test_cli_list_and_export(tmp_path, blend_dir):
    runner = CliRunner()
    result = runner.invoke(cli, ["data", "list", "--verbose"])
    assert result.exit_code == 0, result.output
    for name in EXPECTED:
        assert name in result.output
    out = tmp_path / "x.jsonl"
    result = runner.invoke(
        cli, ["data", "export", "demo-culture", "--split", "heldout", "--countries", "Spain,UK", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "Spain" in result.output and "heldout" in result.output and "wrote 37 examples" in result.output
    assert {ex.group for ex in read_examples(out)} == {"Spain", "UK"}
    result = runner.invoke(
        cli,
        [
            "data",
            "export",
            "blend-control",
            "--data-dir",
            str(blend_dir),
            "--option",
            "max_variants=1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0 and "wrote 10 examples" in result.output, result.output
    result = runner.invoke(cli, ["data", "countries"])
    assert result.exit_code == 0 and "united_states_of_america" in result.output


def test_cli_export_with_model_applies_chat_template(tmp_path, tiny_chat_tokenizer):
    out = tmp_path / "x.jsonl"
    result = CliRunner().invoke(
        cli,
        [
            "data",
            "export",
            "countryrc",
            "--split",
            "identification",
            "--countries",
            "Iran",
            "--model",
            str(tmp_path / "tok"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "chat template applied" in result.output
    exs = read_examples(out)
    assert len(exs) == 28 and all(ex.chat_template_applied for ex in exs)


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["data", "export", "nope", "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code != 0 and result.output.strip().startswith("error: unknown benchmark")
    result = runner.invoke(
        cli, ["data", "export", "demo-culture", "--templates", "zzz", "--out", str(tmp_path / "x.jsonl")]
    )
    assert result.exit_code != 0 and "unknown template 'zzz'" in result.output
    result = runner.invoke(
        cli, ["data", "export", "demo-culture", "--option", "max_variants=2", "--out", str(tmp_path / "x.jsonl")]
    )
    assert result.exit_code != 0 and "demo-culture: unknown option 'max_variants'; it takes no options" in result.output
    assert not (tmp_path / "x.jsonl").exists()


def test_hub_is_the_fallback_and_says_how_to_point_at_files(monkeypatch, tmp_path):
    with pytest.raises(InputError) as info:
        load_items("commonsenseqa")
    message = str(info.value)
    assert "no --data-dir given and the hub copy could not be loaded" in message
    assert "HF_HUB_OFFLINE" in message and "--data-dir DIR" in message and "dev_rand_split.jsonl" in message

    calls = []

    def fake(hub_id, config, split):
        calls.append((hub_id, config, split))
        return [
            {
                "id": "h1",
                "question": "Q?",
                "question_concept": "c",
                "choices": {"label": ["A", "B"], "text": ["yes", "no"]},
                "answerKey": "B",
            }
        ]

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setattr(hub, "_load_dataset", fake)
    items = load_items("commonsenseqa")
    assert calls == [("tau/commonsense_qa", None, "validation")] and items[0].gold == "no"
    assert items[0].meta["question_id"] == "h1"

    def broken(*args):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(hub, "_load_dataset", broken)
    with pytest.raises(InputError, match="ConnectionError: no route to host.*pass --data-dir DIR"):
        load_items("qnli")


def test_hub_blend_uses_topics_config(monkeypatch):
    def fake(hub_id, config, split):
        assert hub_id == "nayeon212/BLEnD" and split is None
        if config == "multiple-choice-questions":
            return {
                "test": [
                    {
                        "MCQID": "Q1_0",
                        "ID": "Q1",
                        "country": "UK",
                        "prompt": "What? Without any explanation...",
                        "choices": json.dumps({"A": "a", "B": "b", "C": "c", "D": "d"}),
                        "answer_idx": "C",
                    }
                ]
            }
        assert config == "short-answer-questions"
        return {"GB": [{"ID": "Q1", "Topic": "Sport"}]}

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setattr(hub, "_load_dataset", fake)
    (item,) = load_items("blend")
    assert (item.group, item.split, item.gold, item.question) == ("UK", "identification", "c", "What?")


def _fake_csqa_hub(calls):
    def fake(hub_id, config, split, **kwargs):
        calls.append((hub_id, config, split, kwargs))
        return [
            {
                "id": f"h{i}",
                "question": f"Q{i}?",
                "question_concept": "c",
                "choices": {"label": ["A", "B"], "text": ["yes", "no"]},
                "answerKey": "B",
            }
            for i in range(3)
        ]

    return fake


def test_hub_provenance_pins_revision_and_hashes_rows(monkeypatch):
    calls = []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setattr(hub, "_load_dataset", _fake_csqa_hub(calls))
    load_items("commonsenseqa")  # outside the block: unpinned, nothing recorded
    with hub.hub_provenance("abc123") as fetched:
        load_items("commonsenseqa")
    assert calls[0][3] == {} and calls[1][3] == {"revision": "abc123"}
    (info,) = fetched.values()
    rows = _fake_csqa_hub([])(None, None, None)
    assert info == {
        "revision": "abc123",
        "splits": {"validation": {"rows": 3, "sha256": hub.rows_sha256(rows)}},
    }
    # the hash is of content: other rows give another hash, the same rows (any key order) the same one
    assert hub.rows_sha256(rows[:2]) != hub.rows_sha256(rows)
    assert hub.rows_sha256([dict(reversed(list(r.items()))) for r in rows]) == hub.rows_sha256(rows)


def test_data_export_revision_prints_the_hub_fingerprint(monkeypatch, tmp_path):
    calls = []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setattr(hub, "_load_dataset", _fake_csqa_hub(calls))
    out = tmp_path / "csqa.jsonl"
    result = CliRunner().invoke(cli, ["data", "export", "commonsenseqa", "--revision", "v1.0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert calls[0][3] == {"revision": "v1.0"}
    assert "hub: load_dataset('tau/commonsense_qa', split='validation') at v1.0 (validation: 3 rows sha256" in (
        result.output
    )


def test_data_root_layout(tmp_path, culturalbench_dir, normad_file):
    # a root folder with one sub-folder per benchmark, like ../shared/data
    assert len(load_items("culturalbench-easy", data_dir=tmp_path)) == 6
    assert len(load_items("normad", data_dir=tmp_path)) == 12


# ---------------------------------------------------------------------------------------------
# Bad input: each names the file and the row.


def test_missing_column(culturalbench_dir):
    path = culturalbench_dir / "CulturalBench-Easy.csv"
    path.write_text(path.read_text(encoding="utf-8").replace("prompt_option_b", "option_b"), encoding="utf-8")
    with pytest.raises(InputError, match=r"CulturalBench-Easy\.csv:1: missing column\(s\) 'prompt_option_b'"):
        load_items("culturalbench-easy", data_dir=culturalbench_dir)


def test_unknown_country_in_a_row(normad_file):
    text = normad_file.read_text(encoding="utf-8").replace("spain", "atlantis", 1)
    normad_file.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=r"normad\.csv:2: unknown country 'atlantis'"):
        load_items("normad", data_dir=normad_file)


def test_empty_file(culturalbench_dir, nlu_dir):
    (culturalbench_dir / "CulturalBench-Easy.csv").write_text("", encoding="utf-8")
    with pytest.raises(InputError, match=r"CulturalBench-Easy\.csv: the file is empty"):
        load_items("culturalbench-easy", data_dir=culturalbench_dir)
    (nlu_dir / "qnli" / "dev.tsv").write_text("index\tquestion\tsentence\tlabel\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"dev\.tsv: no data rows after the header"):
        load_items("qnli", data_dir=nlu_dir)


def test_label_outside_the_options(culturalbench_dir, nlu_dir):
    path = culturalbench_dir / "CulturalBench-Easy.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4].replace(",A,China", ",E,China")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"CulturalBench-Easy\.csv:5: answer 'E' is not one of the options"):
        load_items("culturalbench-easy", data_dir=culturalbench_dir)
    path = nlu_dir / "commonsenseqa" / "dev_rand_split.jsonl"
    path.write_text(path.read_text(encoding="utf-8").replace('"answerKey": "A"', '"answerKey": "Z"'), encoding="utf-8")
    with pytest.raises(InputError, match=r"dev_rand_split\.jsonl:1: answerKey 'Z' is not one of the choice labels"):
        load_items("commonsenseqa", data_dir=nlu_dir)


def test_not_utf8(normad_file, nlu_dir):
    data = normad_file.read_bytes().replace(b"Story 3", b"Story \xff3")
    normad_file.write_bytes(data)
    with pytest.raises(InputError, match=r"normad\.csv:4: not UTF-8 text .*re-save the file as UTF-8"):
        load_items("normad", data_dir=normad_file)
    path = nlu_dir / "mrpc" / "msr_paraphrase_test.txt"
    path.write_bytes(path.read_bytes().replace(b"It rained", b"It r\xe9ined"))
    with pytest.raises(InputError, match=r"msr_paraphrase_test\.txt:3: not UTF-8"):
        load_items("mrpc", data_dir=nlu_dir)


def test_missing_data_dir(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_items("normad", data_dir=tmp_path / "nowhere")
    with pytest.raises(InputError, match="no full_value_qa.tsv|no question_metadata.json"):
        load_items("worldvaluesbench", data_dir=tmp_path)
