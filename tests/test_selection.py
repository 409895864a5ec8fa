"""Historical-variance ranking (paper Eq. 1-2) reproduces the paper's pi-indices from the shipped history."""

from __future__ import annotations

import csv
import json

import pytest

from oneshot_rlvr import RESOURCES
from oneshot_rlvr.cli import main
from oneshot_rlvr.errors import DataError
from oneshot_rlvr.selection import (
    history_from_metrics,
    load_history,
    rank_examples,
    read_ranking,
    write_ranking,
)

HISTORY = RESOURCES / "selection" / "acc_step_500.json"
REFERENCE = RESOURCES / "selection" / "hvs_ranking_qwen2.5-math-1.5b_step500.csv"


@pytest.fixture(scope="module")
def ranking():
    return rank_examples(load_history(HISTORY))


def test_paper_pi_indices(ranking):
    by_rank = {e.pi_rank: e.index for e in ranking}
    assert (by_rank[1], by_rank[2], by_rank[13], by_rank[1209]) == (124, 267, 682, 789)
    # the other examples named in the paper's appendix (official-repo.md §3.4)
    assert [by_rank[k] for k in (3, 4, 7, 11, 16, 17, 605, 606, 1201, 1207, 1208)] == \
        [531, 931, 568, 875, 50, 870, 60, 906, 847, 174, 770]


def test_all_1209_ranks_match_reference_csv(ranking):
    with REFERENCE.open() as fh:
        ref = list(csv.DictReader(fh))
    assert len(ranking) == len(ref) == 1209
    assert [e.index for e in ranking] == [int(r["dsr_sub_index"]) for r in ref]
    assert [e.hist_std for e in ranking] == pytest.approx([float(r["hist_std"]) for r in ref], abs=1e-12)


def test_population_std_and_stable_ties():
    # population std: [0, 1] -> 0.5 (the sample std would be 0.707); ties keep key order
    hist = {"5": [0.0, 0.0], "3": [0.0, 1.0], "9": [1.0, 1.0], "1": [0.5, 0.5], "7": [1.0, 0.0]}
    r = rank_examples(hist)
    assert [e.index for e in r] == [3, 7, 5, 9, 1]
    assert r[0].hist_std == 0.5


def test_ties_follow_key_order_not_index_order():
    r = rank_examples({"10": [0.0], "2": [0.0], "7": [0.0]})
    assert [e.index for e in r] == [10, 2, 7]


def test_ranking_csv_roundtrip(tmp_path, ranking):
    out = tmp_path / "ranking.csv"
    write_ranking(ranking, out, {124: "12.8"})
    assert read_ranking(out)[:3] == [124, 267, 531]
    with out.open() as fh:
        first = next(csv.DictReader(fh))
    assert first["ground_truth"] == "12.8" and int(first["n_epochs_recorded"]) == 53


def test_bad_history_names_the_key(tmp_path):
    p = tmp_path / "h.json"
    p.write_text(json.dumps({"1": [0.5], "x": [0.1]}))
    with pytest.raises(DataError, match="'x'"):
        load_history(p)
    p.write_text(json.dumps({"1": [0.5, 1.5]}))
    with pytest.raises(DataError, match="key '1', epoch 1"):
        load_history(p)


def test_history_from_training_metrics(tmp_path):
    """Our trainer's acc/by_index per step becomes the per-epoch history (one entry per sampled step)."""
    m = tmp_path / "metrics.jsonl"
    recs = [
        {"step": 1, "acc/mean": 0.5, "acc/by_index": {"3": 0.25, "1": 0.5}},
        {"step": 2, "acc/mean": 0.5, "acc/by_index": {"2": 1.0}},
        {"step": 3, "acc/mean": 0.5, "acc/by_index": {"1": 0.75, "3": 0.0}},
        {"step": 4, "acc/mean": 0.5, "acc/by_index": {"1": 1.0}},
    ]
    m.write_text("".join(json.dumps(r) + "\n" for r in recs))
    h = history_from_metrics(m, up_to_step=3)
    assert h == {"1": [0.5, 0.75], "3": [0.25, 0.0], "2": [1.0]}
    assert list(h) == ["1", "3", "2"]  # first appearance, by index within a step: a deterministic tie order
    # stds 0.125 (1), 0.125 (3), 0 (2): the tie keeps that key order
    assert [e.index for e in rank_examples(h)] == [1, 3, 2]
    # a run that stopped before --up-to-step would rank on fewer epochs than asked (was accepted)
    with pytest.raises(DataError, match=r"metrics end at step 4, before --up-to-step 500"):
        history_from_metrics(m, up_to_step=500)
    assert history_from_metrics(m, up_to_step=4)["1"] == [0.5, 0.75, 1.0]
    m.write_text(json.dumps({"step": 1, "acc/mean": 0.5}) + "\n")
    with pytest.raises(DataError, match="acc/by_index"):
        history_from_metrics(m)


def test_cli_score_and_rank(tmp_path, capsys):
    hist, out = tmp_path / "history.json", tmp_path / "ranking.csv"
    pool = RESOURCES / "train" / "dsr_sub.jsonl"
    assert main(["score-pool", "--history", str(HISTORY), "--pool", str(pool), "--out", str(hist)]) == 0
    assert list(json.loads(hist.read_text())) == list(json.loads(HISTORY.read_text()))  # key order kept
    assert main(["rank", "--history", str(hist), "--pool", str(pool), "--out", str(out)]) == 0
    assert read_ranking(out)[:2] == [124, 267]
    with REFERENCE.open() as fh:
        ref_labels = [r["ground_truth"] for r in csv.DictReader(fh)]
    with out.open() as fh:
        assert [r["ground_truth"] for r in csv.DictReader(fh)] == ref_labels


@pytest.mark.parametrize("command", ["score-pool", "rank"])
def test_cli_rejects_index_not_in_pool(tmp_path, capsys, command):
    # rank --pool used to write the CSV with an empty ground truth for 99999 (a history of another pool)
    hist = tmp_path / "h.json"
    hist.write_text(json.dumps({"0": [0.0, 1.0], "99999": [0.5, 1.0]}))
    pool = RESOURCES / "train" / "dsr_sub.jsonl"
    rc = main([command, "--history", str(hist), "--pool", str(pool), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{hist}: index 99999 is not in the pool {pool}" in err, err
    assert not (tmp_path / "o").exists()


def test_cli_rank_without_pool_takes_any_index(tmp_path):
    hist, out = tmp_path / "h.json", tmp_path / "r.csv"
    hist.write_text(json.dumps({"0": [0.0, 1.0], "99999": [0.5, 1.0]}))
    assert main(["rank", "--history", str(hist), "--out", str(out)]) == 0
    assert read_ranking(out) == [0, 99999]


@pytest.mark.parametrize("bad", [
    "[1]",
    json.dumps({"step": 2, "acc/by_index": {"a": 0.5}}),
    json.dumps({"step": 2, "acc/by_index": {"1": "x"}}),
    json.dumps({"step": 2, "acc/by_index": {"1": None}}),
])
def test_bad_metrics_line_names_file_and_line(tmp_path, capsys, bad):
    m = tmp_path / "metrics.jsonl"
    m.write_text(json.dumps({"step": 1, "acc/by_index": {"1": 0.5}}) + "\n" + bad + "\n")
    with pytest.raises(DataError, match=r"metrics\.jsonl: line 2"):
        history_from_metrics(m)
    out = tmp_path / "h.json"
    rc = main(["score-pool", "--metrics", str(m), "--pool", str(RESOURCES / "train" / "dsr_sub.jsonl"),
               "--out", str(out)])
    assert rc == 2 and "line 2" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("row, field", [
    ([1, 2], "expected a JSON object"),
    ({"prompt": [{"role": "user", "content": "1+1?"}], "reward_model": {"ground_truth": "2"}, "extra_info": "x"},
     "extra_info.index"),
    ({"prompt": [{"role": "user", "content": "1+1?"}], "extra_info": {"index": 1}}, "reward_model.ground_truth"),
])
def test_pool_of_another_format_names_file_and_field(tmp_path, capsys, row, field):
    pool, hist = tmp_path / "pool.jsonl", tmp_path / "h.json"
    pool.write_text(json.dumps(row) + "\n")
    hist.write_text(json.dumps({"1": [0.5, 1.0]}))
    for cmd in ("score-pool", "rank"):
        out = tmp_path / f"{cmd}.out"
        assert main([cmd, "--history", str(hist), "--pool", str(pool), "--out", str(out)]) == 2, cmd
        err = capsys.readouterr().err
        assert f"{pool}: line 1" in err and field in err, (cmd, err)
        assert not out.exists()


def test_one_index_under_two_keys_is_an_error(tmp_path, capsys):
    hist = tmp_path / "h.json"
    hist.write_text(json.dumps({"7": [0.0, 1.0], "07": [1.0, 0.0]}))  # was ranked pi1 = pi2 = 7
    with pytest.raises(DataError, match="keys '7' and '07' are the same pool index 7"):
        load_history(hist)
    assert main(["rank", "--history", str(hist), "--out", str(tmp_path / "r.csv")]) == 2
    assert "'07'" in capsys.readouterr().err and not (tmp_path / "r.csv").exists()


def test_ranking_with_a_repeated_index_is_an_error(tmp_path):
    p = tmp_path / "ranking.csv"
    p.write_text("pi_rank,dsr_sub_index\n1,124\n2,267\n3,124\n")
    with pytest.raises(DataError, match="row 4: dsr_sub_index 124 repeats row 2"):
        read_ranking(p)


def test_ranking_csv_with_a_byte_order_mark_reads(tmp_path):
    """Excel saves CSVs as UTF-8 with a BOM; it used to hide the pi_rank column ("expected columns ...")."""
    p = tmp_path / "ranking.csv"
    p.write_bytes(b"\xef\xbb\xbfpi_rank,dsr_sub_index\n1,124\n2,267\n")
    assert read_ranking(p) == [124, 267]
