"""ScoreTable: round trip, addition of shards, refusal of mixed or damaged tables."""

from __future__ import annotations

import errno

import pytest
import torch

from culture_neurons import ScoreTable
from culture_neurons.attribution.engine import score_examples
from culture_neurons.errors import TableError
from tests.tiny import make_examples


@pytest.fixture
def table(tokenizer, llama):
    return score_examples(
        llama, tokenizer, make_examples(6), batch_size=3, progress=False, dataset="demo", split="identification"
    )


def test_round_trip(table, tmp_path):
    path = table.save(tmp_path / "t.safetensors")
    back = ScoreTable.load(path)
    assert back.sites == table.sites and back.groups == table.groups
    assert all(torch.equal(back.scores[s], table.scores[s]) for s in table.sites)
    assert torch.equal(back.counts, table.counts) and torch.equal(back.prob_sums, table.prob_sums)
    assert back.meta["example_ids"] == [f"ex{i}" for i in range(6)]
    assert back.meta["options"]["aggregation"] == "max" and back.meta["model"]["family"] == "llama"
    assert back.meta["dataset"] == "demo" and back.meta["package_version"]
    assert back.content_hash() == table.content_hash()
    assert back.scores["mlp.gate"].shape == (2, 96, 3)
    expected = table.scores["mlp.gate"].sum(-1) / 6
    assert torch.allclose(back.dataset_score("mlp.gate"), expected)
    assert torch.allclose(back.group_score("mlp.gate", "Mexico"), table.scores["mlp.gate"][..., 1] / 6)


def test_shards_add_up_to_the_whole(tokenizer, llama, table):
    exs = make_examples(6)
    a = score_examples(llama, tokenizer, exs[:4], batch_size=3, progress=False)
    b = score_examples(llama, tokenizer, exs[4:], batch_size=3, progress=False)
    total = a + b
    assert total.groups == table.groups
    for s in table.sites:
        assert torch.allclose(total.scores[s], table.scores[s], rtol=1e-5, atol=1e-7)
    assert torch.equal(total.counts, table.counts)
    assert total.meta["example_ids"] == table.meta["example_ids"]


def test_group_union_when_shards_see_different_groups(tokenizer, llama):
    exs = make_examples(6)
    a = score_examples(llama, tokenizer, [e for e in exs if e.group == "Spain"], progress=False)
    b = score_examples(llama, tokenizer, [e for e in exs if e.group != "Spain"], progress=False)
    total = a + b
    assert total.groups == ["Spain", "Japan", "Mexico"]
    assert total.counts.tolist() == [2, 2, 2]
    assert torch.equal(total.scores["attn.q"][..., 0], a.scores["attn.q"][..., 0])


def test_refuses_double_counting_and_other_models(tokenizer, llama, table):
    with pytest.raises(TableError, match="share 6 example id"):
        table + table
    from tests.tiny import tiny_model

    other = score_examples(tiny_model("qwen2"), tokenizer, make_examples(2), progress=False)
    with pytest.raises(TableError, match="different models"):
        table + other
    control = score_examples(llama, tokenizer, make_examples(8)[6:], control=True, progress=False)
    with pytest.raises(TableError, match="'control'"):
        table + control


def test_damaged_files_fail_clearly(table, tmp_path):
    path = table.save(tmp_path / "t.safetensors")
    data = path.read_bytes()
    short = tmp_path / "short.safetensors"
    short.write_bytes(data[: len(data) // 2])
    with pytest.raises(TableError, match="short.safetensors.*truncated or corrupt"):
        ScoreTable.load(short)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(TableError, match="not a culture-neurons score table"):
        ScoreTable.load(foreign)
    with pytest.raises(TableError, match="does not exist"):
        ScoreTable.load(tmp_path / "nope.safetensors")


def test_nan_table_is_never_written(table, tmp_path):
    table.scores["attn.k"][0, 0, 0] = float("nan")
    with pytest.raises(TableError, match="NaN"):
        table.save(tmp_path / "t.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file(table, tmp_path, monkeypatch):
    path = table.save(tmp_path / "t.safetensors")
    before = path.read_bytes()
    import safetensors.torch

    def disk_full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.raises(OSError):
        table.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]
