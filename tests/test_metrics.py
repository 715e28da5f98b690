import math

import pytest

from viewfinder.eval.metrics import accuracy, mrr, ndcg_at_k, precision_at_k, rank_stats, recall_at_k

RUNS = {"q1": ["a", "b", "c", "d"], "q2": ["x", "y", "z", "w"], "q3": ["m", "n", "o", "p"]}
QRELS = {"q1": {"b"}, "q2": {"x", "w"}, "q3": {"zz"}}


def test_hand_computed():
    assert recall_at_k(RUNS, QRELS, 1) == pytest.approx((0 + 0.5 + 0) / 3)
    assert recall_at_k(RUNS, QRELS, 4) == pytest.approx((1 + 1 + 0) / 3)
    assert precision_at_k(RUNS, QRELS, 2) == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert mrr(RUNS, QRELS) == pytest.approx((1 / 2 + 1 + 0) / 3)
    q2 = (1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(RUNS, QRELS, 4) == pytest.approx((1 / math.log2(3) + q2 + 0) / 3)
    assert rank_stats(RUNS, QRELS) == (pytest.approx((2 + 1 + 5) / 3), 2.0)
    assert accuracy(["a", "b"], ["a", "c"]) == 0.5


def test_against_ranx():
    """The same numbers as an established implementation on the same rankings."""
    ranx = pytest.importorskip("ranx")
    import random

    rnd = random.Random(0)
    items = [f"d{i}" for i in range(30)]
    runs = {f"q{i}": rnd.sample(items, 30) for i in range(25)}
    qrels = {q: set(rnd.sample(items, rnd.randint(1, 4))) for q in runs}
    r_qrels = ranx.Qrels({q: {d: 1 for d in rel} for q, rel in qrels.items()})
    r_run = ranx.Run({q: {d: float(30 - i) for i, d in enumerate(ranking)} for q, ranking in runs.items()})
    got = ranx.evaluate(r_qrels, r_run, ["recall@5", "precision@5", "mrr", "ndcg@10"])
    assert recall_at_k(runs, qrels, 5) == pytest.approx(got["recall@5"])
    assert precision_at_k(runs, qrels, 5) == pytest.approx(got["precision@5"])
    assert mrr(runs, qrels) == pytest.approx(got["mrr"])
    assert ndcg_at_k(runs, qrels, 10) == pytest.approx(got["ndcg@10"])
