"""Training sets: pi-sets rebuilt from the ranking equal the authors' files; duplication, even merge
split, label override, and label noise (reproducible, the right share, always a different label)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from oneshot_rlvr import RESOURCES
from oneshot_rlvr.cli import main
from oneshot_rlvr.errors import DataError
from oneshot_rlvr.selection import load_history, rank_examples
from oneshot_rlvr.trainset import (
    add_label_noise,
    build_train_set,
    duplicate_to_batch,
    ground_truth,
    noisy_label,
    read_rows,
    select_random,
)

POOL_FILE = RESOURCES / "train" / "dsr_sub.jsonl"
ONE_SHOT = RESOURCES / "train" / "one_shot"
CORE = ("data_source", "prompt", "ability", "reward_model", "extra_info")


@pytest.fixture(scope="module")
def pool():
    return read_rows(POOL_FILE)


@pytest.fixture(scope="module")
def ranking():
    return [e.index for e in rank_examples(load_history(RESOURCES / "selection" / "acc_step_500.json"))]


def _core(rows):
    return [{k: r[k] for k in CORE} for r in rows]


@pytest.mark.parametrize("name,ranks", [
    ("pi1_r128", [1]), ("pi2_r128", [2]), ("pi13_r128", [13]), ("pi1209_r128", [1209]),
    ("merge_pi1_pi13_r128", [1, 13]), ("merge_pi1_pi2_pi13_pi1209_r128", [1, 2, 13, 1209]),
])
def test_rebuilt_pi_sets_equal_the_authors_files(pool, ranking, name, ranks):
    rows, info = build_train_set(pool, ranking=ranking, ranks=ranks, batch_size=128)
    assert _core(rows) == _core(read_rows(ONE_SHOT / f"{name}.jsonl"))
    assert info["few_shot"] and info["rows"] == 128


def test_duplication_even_split_in_blocks(pool):
    rows = duplicate_to_batch(pool[:3], 8)  # 8 = 3 + 3 + 2: the remainder goes to the first examples
    assert [r["extra_info"]["index"] for r in rows] == [0, 0, 0, 1, 1, 1, 2, 2]
    rows = duplicate_to_batch(pool[:16], 128)
    assert Counter(r["extra_info"]["index"] for r in rows) == {i: 8 for i in range(16)}
    with pytest.raises(DataError, match="smaller than the 3"):
        duplicate_to_batch(pool[:3], 2)


def test_full_set_is_not_duplicated(pool):
    rows, info = build_train_set(pool, batch_size=128)
    assert len(rows) == 1209 and not info["few_shot"]
    rows, _ = build_train_set(pool, first=16, batch_size=4)
    assert [r["extra_info"]["index"] for r in rows] == list(range(16))


def test_random_selection_is_seeded(pool):
    a = [r["extra_info"]["index"] for r in select_random(pool, 16, seed=0)]
    b = [r["extra_info"]["index"] for r in select_random(pool, 16, seed=0)]
    c = [r["extra_info"]["index"] for r in select_random(pool, 16, seed=1)]
    assert a == b != c and len(set(a)) == 16


def test_label_override_keeps_the_original(pool, ranking):
    rows, _ = build_train_set(pool, ranking=ranking, ranks=[1], batch_size=4, label_override="12.7")
    assert [ground_truth(r) for r in rows] == ["12.7"] * 4
    assert rows[0]["extra_info"]["original_ground_truth"] == "12.8"
    assert ground_truth(pool[124]) == "12.8"  # the pool itself is untouched


@pytest.mark.parametrize("fraction", [0.6, 0.9])
def test_label_noise_share_reproducible_and_always_different(pool, fraction):
    rows, chosen = add_label_noise(pool, fraction, seed=0)
    again, chosen2 = add_label_noise(pool, fraction, seed=0)
    other, chosen3 = add_label_noise(pool, fraction, seed=1)
    assert chosen == chosen2 and [ground_truth(r) for r in rows] == [ground_truth(r) for r in again]
    assert chosen != chosen3
    assert len(chosen) == round(fraction * 1209)  # 725 / 1088
    changed = [i for i, (a, b) in enumerate(zip(pool, rows)) if ground_truth(a) != ground_truth(b)]
    assert changed == chosen  # exactly the chosen rows changed, all of them
    assert all(rows[i]["extra_info"]["label_noised"] for i in chosen)
    assert all(rows[i]["extra_info"]["original_ground_truth"] == ground_truth(pool[i]) for i in chosen)


def test_noise_rules():
    """Integers/decimals: +-1..10 and maybe a sign flip; fractions: numerator and denominator shifted."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        v = float(noisy_label("12.8", rng))
        assert v != 12.8 and (abs(abs(v) - 12.8) <= 10 + 1e-9 or abs(v + 12.8) <= 10 + 1e-9)
        assert noisy_label("12.8", rng).split(".")[1] != ""  # decimals kept
        n = int(noisy_label("24", rng))
        assert n != 24 and min(abs(n - 24), abs(-n - 24)) <= 10
        f = noisy_label("\\frac{4}{3}", rng)
        sign = -1 if f.startswith("-") else 1
        num, den = (int(x) for x in f.lstrip("-").removeprefix("\\frac{").removesuffix("}").split("}{"))
        assert den != 0 and sign * num / den != 4 / 3
        assert abs(num - 4) <= 10 + 4 and abs(den - 3) <= 10 + 3  # |n2| with n2 = 4 +- 1..10
    assert noisy_label("\\sqrt{3}", rng) != "\\sqrt{3}"
    assert noisy_label("\\pi", rng).endswith("\\pi")


def test_cli_make_train_set(tmp_path, pool, capsys):
    ranking_csv = RESOURCES / "selection" / "hvs_ranking_qwen2.5-math-1.5b_step500.csv"
    out = tmp_path / "pi1_pi13.jsonl"
    rc = main(["make-train-set", "--pool", str(POOL_FILE), "--ranking", str(ranking_csv), "--ranks", "1,13",
               "--batch-size", "128", "--out", str(out)])
    assert rc == 0
    assert _core(read_rows(out)) == _core(read_rows(ONE_SHOT / "merge_pi1_pi13_r128.jsonl"))
    out = tmp_path / "noisy.jsonl"
    assert main(["make-train-set", "--pool", str(POOL_FILE), "--label-noise", "0.6", "--noise-seed", "0",
                 "--out", str(out)]) == 0
    assert "725 labels corrupted" in capsys.readouterr().out
    # a rank outside the ranking: a one-line error, and nothing written
    bad = tmp_path / "bad.jsonl"
    assert main(["make-train-set", "--pool", str(POOL_FILE), "--ranking", str(ranking_csv), "--ranks", "0",
                 "--batch-size", "128", "--out", str(bad)]) == 2
    assert "pi rank 0 out of range 1..1209" in capsys.readouterr().err and not bad.exists()


def test_bad_rows_name_the_line(tmp_path, capsys):
    f = tmp_path / "pool.jsonl"
    good = json.dumps({"prompt": [{"role": "user", "content": "1+1?"}], "reward_model": {"ground_truth": "2"},
                       "extra_info": {"index": 0}})
    f.write_text(good + "\n" + good + "\n")
    assert main(["prepare-data", "--input", str(f), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "line 2: extra_info.index 0 repeats line 1" in capsys.readouterr().err
    f.write_text(good + "\n{\"prompt\": [], \"reward_model\": {\"ground_truth\": \"1\"}, \"extra_info\": {\"index\": 1}}\n")
    assert main(["prepare-data", "--input", str(f), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "line 2: 'prompt'" in capsys.readouterr().err
    f.write_text(good + "\n{\"prompt\": \n")
    assert main(["prepare-data", "--input", str(f), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "line 2 is not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_make_train_set_never_writes_over_its_input(tmp_path, capsys, monkeypatch):
    pool = tmp_path / "pool.jsonl"
    pool.write_bytes(POOL_FILE.read_bytes())
    ranking_csv = tmp_path / "ranking.csv"
    ranking_csv.write_bytes((RESOURCES / "selection" / "hvs_ranking_qwen2.5-math-1.5b_step500.csv").read_bytes())
    monkeypatch.chdir(tmp_path)
    for out in (str(pool), "./pool.jsonl", "sub/../pool.jsonl"):  # the same file, spelled differently
        assert main(["make-train-set", "--pool", str(pool), "--first", "4", "--out", out]) == 2
        assert "is the --pool file" in capsys.readouterr().err
    assert main(["make-train-set", "--pool", "pool.jsonl", "--ranking", str(ranking_csv), "--ranks", "1",
                 "--batch-size", "4", "--out", "ranking.csv"]) == 2
    assert "is the --ranking file" in capsys.readouterr().err
    assert pool.read_bytes() == POOL_FILE.read_bytes()
    assert ranking_csv.read_bytes() == (RESOURCES / "selection" / "hvs_ranking_qwen2.5-math-1.5b_step500.csv").read_bytes()


def test_make_train_set_bad_ranks_is_a_usage_error(tmp_path, capsys):
    # argparse's own error (usage + message, exit 2), not an exception escaping parse_args
    with pytest.raises(SystemExit) as exc:
        main(["make-train-set", "--pool", str(POOL_FILE), "--ranks", "1,a", "--out", str(tmp_path / "o.jsonl")])
    assert exc.value.code == 2
    assert "--ranks" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--first", "0"], "--first 0 out of range 1..1209"),  # was: the whole pool
    (["--first", "99999"], "--first 99999 out of range 1..1209"),
    (["--label-noise", "0"], "label_noise must be in (0, 1], got 0.0"),  # was: accepted, no noise
])
def test_make_train_set_out_of_range_values(tmp_path, capsys, flags, message):
    out = tmp_path / "o.jsonl"
    assert main(["make-train-set", "--pool", str(POOL_FILE), *flags, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_prepare_data_out_is_a_directory(tmp_path, capsys):
    out = tmp_path / "sources"
    out.mkdir()
    assert main(["prepare-data", "--input", str(POOL_FILE), "--out", str(out)]) == 2
    assert f"--out {out} is a directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sources"] and not any(out.iterdir())  # no .tmp left
