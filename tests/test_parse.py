import pytest

from viewfinder.errors import QueryError
from viewfinder.query.parse import detect_kind, parse_part, parse_query


def test_weights_and_negatives():
    assert parse_part("2:red car").weight == 2.0 and parse_part("2:red car").value == "red car"
    neg = parse_part("-blurry")
    assert (neg.weight, neg.value, neg.kind) == (-1.0, "blurry", "text")
    assert parse_part("+sunset").weight == 1.0
    assert parse_part("0.5:a dog").weight == 0.5


def test_modality_detection(tmp_path):
    f = tmp_path / "x.jpg"
    f.write_bytes(b"not really")
    assert detect_kind(str(f)) == "image"
    assert detect_kind("https://example.com/a.jpg") == "image"
    assert detect_kind("data:image/png;base64,AAAA") == "image"
    assert detect_kind(b"\x89PNG") == "image"
    assert detect_kind("a dog on a beach") == "text"
    assert detect_kind(str(tmp_path / "missing.jpg")) == "text"
    assert detect_kind("x" * 5000) == "text"


def test_hybrid_weights_split_between_modalities(tmp_path):
    img = tmp_path / "a.png"
    img.write_bytes(b"x")
    parts = parse_query(["red", "car"], image=str(img), text_weight=0.8)
    weights = {p.value: p.weight for p in parts}
    assert weights["red"] == pytest.approx(0.4) and weights["car"] == pytest.approx(0.4)
    assert weights[str(img)] == pytest.approx(0.2)


@pytest.mark.parametrize("bad", [[], ["-blurry"], ["   "]])
def test_unusable_queries(bad):
    with pytest.raises(QueryError):
        parse_query(bad)


def test_missing_hybrid_image():
    with pytest.raises(QueryError, match="no such image"):
        parse_query(["cat"], image="/nope/missing.png", text_weight=0.5)


def test_one_string_splits_into_parts(tmp_path):
    parts = parse_query("2:red car -blurry +sunset t-shirt")
    assert [(p.value, p.weight) for p in parts] == [
        ("red car", 2.0),
        ("blurry", -1.0),
        ("sunset t-shirt", 1.0),
    ]
    spaced = tmp_path / "2019 - summer.jpg"
    spaced.write_bytes(b"x")
    assert [p.kind for p in parse_query(str(spaced))] == ["image"]
    assert [p.kind for p in parse_query(str(spaced), local=False)] == ["text"]  # remote: never a file
