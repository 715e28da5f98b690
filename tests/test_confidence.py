"""Calibrated confidence and abstention: the fitting and measuring functions on small arrays
worked out by hand, and the shipped calibration of mini on real photos."""

import numpy as np
import pytest

from viewfinder import Engine
from viewfinder.eval.calibration import (
    abstention,
    expected_calibration_error,
    fit_direction,
    labelled_hits,
    reliability_bins,
    select,
    threshold_for_precision,
)
from viewfinder.models.mini import calibration_file, shipped_heads_path
from viewfinder.query.confidence import (
    FEATURES,
    STRONG,
    CalibratedConfidence,
    HitContext,
    ScoreTailConfidence,
    hit_features,
    load_confidence,
    quadratic_terms,
    query_stats,
)

from conftest import copy_photos


def test_ece_by_hand():
    conf = np.array([0.9, 0.9, 0.1, 0.1])
    right = np.array([True, False, False, False])
    # bin 0.9: accuracy 0.5, gap 0.4 (2 hits); bin 0.1: accuracy 0, gap 0.1 (2 hits)
    assert expected_calibration_error(conf, right) == pytest.approx((2 * 0.4 + 2 * 0.1) / 4)
    bins = reliability_bins(conf, right)
    assert [(b["bin"], b["count"]) for b in bins] == [("0.1-0.2", 2), ("0.9-1.0", 2)]
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([True, False])) == 0.0


def test_threshold_for_precision_keeps_the_most_confident_until_precision_drops():
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    ok = np.array([True, True, False, True, False])
    # kept from the top: 1/1, 2/2, 2/3, 3/4, 3/5 -> the lowest threshold with >= 0.75 is 0.6
    assert threshold_for_precision(conf, ok, 0.75) == pytest.approx(0.6)
    assert threshold_for_precision(conf, ok, 1.0) == pytest.approx(0.8)
    assert threshold_for_precision(conf, np.zeros(5, bool), 0.5) == 1.0


def test_labelled_hits_judge_each_query_present_and_absent():
    items = np.eye(4, dtype=np.float32)
    queries = np.array([[0.9, 0.1, 0.0, 0.0]], np.float32)
    hits = labelled_hits(queries, items, [{0}], "text->image", k=2, absent_removes=[{0, 1}])
    top = select(hits, hits.top)
    assert top.relevant.tolist() == [True, False]  # present: item 0 first; absent: it is gone
    assert top.absent.tolist() == [False, True]
    assert top.answerable.tolist() == [True, False]
    # the absent case removed the whole category {0, 1}: its best hit is item 2 or 3
    assert [c.score for c, _ in top.contexts] == pytest.approx([0.9, 0.0], abs=1e-6)
    assert hits.weight.sum() == pytest.approx(2.0)  # each judged query weighs 1


def noisy_copies(seed: int, n: int = 200, queries: int = 60, dim: int = 32):
    """`n` random unit items, and `queries` noisy copies of some of them: (items, targets, queries)."""
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n, dim)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    targets = rng.choice(n, queries, replace=False)
    copies = items[targets] + 0.6 * rng.normal(size=(queries, dim)).astype(np.float32) / np.sqrt(dim)
    return items, targets, copies / np.linalg.norm(copies, axis=1, keepdims=True)


def test_fit_separates_present_from_absent_and_round_trips(tmp_path):
    items, targets, queries = noisy_copies(0)
    hits = labelled_hits(queries, items, [{int(t)} for t in targets], "text->image")
    fit = fit_direction(hits, precision=0.95)
    model = CalibratedConfidence({"text->image": fit})
    top = select(hits, hits.top)
    report = abstention(model, top)
    # the threshold is the lowest that keeps 95% of the answered queries' subjects present
    assert report.kept_present >= 0.95 and report.absent_abstain_rate >= 0.9
    assert report.right_top_abstain_rate < 0.2
    again = CalibratedConfidence.from_json(model.to_json())
    ctx, stats = top.contexts[0]
    assert again.confidence(ctx, stats) == pytest.approx(model.confidence(ctx, stats))
    assert again.abstains(ctx, stats) == model.abstains(ctx, stats)
    # text over stored texts borrows text->image; a direction with no fit falls back
    assert model.confidence(HitContext(ctx.score, 1, ctx.score, ctx.next_score, "text->text"), stats) == (
        pytest.approx(model.confidence(ctx, stats))
    )
    other = HitContext(ctx.score, 1, ctx.score, ctx.next_score, "image->image")
    assert model.confidence(other, stats) == ScoreTailConfidence().confidence(other, stats)


def test_a_calibration_fitted_on_fewer_features_keeps_working():
    """Calibration files list the features they were fitted on; one written before later features
    were added reads only those, and a list that is not FEATURES' start is refused."""
    import json

    old = {
        "features": list(FEATURES[:7]),
        "directions": {
            "text->image": {
                "relevant": {"coef": [10.0, 0, 0, 0, 0, 0, 0], "intercept": -5.0},
                "present": {"coef": [10.0, 0, 0, 0, 0, 0, 0], "intercept": -5.0},
                "abstain_below": 0.5,
                "target_precision": 0.8,
            }
        },
    }
    model = CalibratedConfidence.from_json(json.dumps(old))
    stats = query_stats(np.array([0.1, 0.2, 0.3]), 3)
    hit = HitContext(0.7, 1, 0.7, 0.2, "text->image")
    assert len(hit_features(hit, stats)) == len(FEATURES) > 7
    assert model.confidence(hit, stats) == pytest.approx(1 / (1 + np.exp(-(10 * 0.7 - 5))))
    assert json.loads(model.to_json())["features"] == old["features"]
    old["features"] = list(FEATURES[1:8])
    with pytest.raises(ValueError, match="not a start of"):
        CalibratedConfidence.from_json(json.dumps(old))


def test_presence_is_learnt_only_from_queries_whose_answer_is_known():
    """An image query with no other image of its caption is neither "present" nor "absent":
    it must not teach the presence model (nor move the threshold)."""
    items, targets, queries = noisy_copies(1)
    known = labelled_hits(queries[:40], items, [{int(t)} for t in targets[:40]], "image->image")
    # near copies of stored items whose own relevant set is empty: they look like right answers
    unknown = labelled_hits(queries[40:], items, [set() for _ in targets[40:]], "image->image")
    alone, together = fit_direction(known), fit_direction(known.extend(unknown))
    assert together.present == alone.present and together.abstain_below == alone.abstain_below


def test_an_image_querys_own_picture_is_certain():
    items, targets, queries = noisy_copies(2)
    fit = fit_direction(labelled_hits(queries, items, [{int(t)} for t in targets], "image->image"))
    model = CalibratedConfidence({"image->image": fit, "text->image": fit})
    stats = query_stats(np.array([0.1, 0.2, 0.3]), 3)
    assert model.confidence(HitContext(0.9995, 1, 0.9995, 0.3, "image->image"), stats) == 1.0
    assert model.confidence(HitContext(0.9995, 1, 0.9995, 0.3, "text->image"), stats) < 1.0


def test_score_tail_fallback_where_no_calibration(tmp_path):
    assert isinstance(load_confidence(None), ScoreTailConfidence)
    assert isinstance(load_confidence(tmp_path / "missing.json"), ScoreTailConfidence)
    stats = query_stats(np.array([0.1, 0.2, 0.3]), 3)
    assert ScoreTailConfidence().confidence(HitContext(0.9, 1, 0.9, None, "text->image"), stats) > 0.99


@pytest.mark.slow
def test_mini_ships_a_calibration_that_abstains_on_absent_subjects(tmp_path, photos):
    assert calibration_file(shipped_heads_path()).exists()
    folder = copy_photos(photos, tmp_path / "pics")
    with Engine.open(tmp_path / "db", model="mini", workers=0) as eng:
        eng.index(folder, progress=False)
        assert isinstance(eng.confidence, CalibratedConfidence)
        cat = eng.search("a cat", k=3)
        assert cat.hits[0].path.endswith("chelsea.png") and not cat.abstained
        assert cat.hits[0].confidence > cat.hits[1].confidence
        for absent in ("a submarine", "snow on mountains"):  # nothing like them among the photos
            assert eng.search(absent, k=3).abstained, absent
        # a hybrid query has no fit: the score-tail model judges it (the apple is there)
        apple = next(folder.rglob("apple.jpg"))
        hybrid = eng.search("orange fruit", image=str(apple), text_weight=0.7, k=3)
        assert hybrid.hits[0].path == str(apple) and not hybrid.abstained
        # an image query's own stored picture is certain, and another shot of its scene is a
        # strong match (fitted on the photo variants; 0.11 without them, docs/confidence.md)
        aloe_l, aloe_r = (next(folder.rglob(name)) for name in ("aloeL.jpg", "aloeR.jpg"))
        same = eng.search(image=str(aloe_l), k=2)
        assert [h.path for h in same.hits] == [str(aloe_l), str(aloe_r)] and not same.abstained
        assert same.hits[0].confidence == 1.0 and same.hits[1].confidence >= STRONG


def test_quadratic_terms_are_the_ones_scikit_learn_fits_on():
    """Query time expands the features with numpy; the fit's coefficients follow scikit-learn's
    PolynomialFeatures order, so the two must agree term for term."""
    from sklearn.preprocessing import PolynomialFeatures

    z = np.random.default_rng(0).normal(size=(5, len(FEATURES)))
    expected = PolynomialFeatures(2, include_bias=False).fit_transform(z)
    assert np.allclose(quadratic_terms(z), expected)
    assert np.allclose(quadratic_terms(z[0]), expected[0])  # one hit at a time, as a search asks
