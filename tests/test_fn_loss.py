"""In-batch false-negative masking (train.mask_false_negatives): masked logits worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from hardneg.errors import HardnegError
from hardneg.train.config import TrainConfig
from hardneg.train.losses import false_negative_mask, mask_counts, masked_infonce
from hardneg.train.trainer import prepare_rows

R = 1 / math.sqrt(2)
# b = 2 rows, k = 1 negative. Queries q0 = (1, 0), q1 = (0, 1); documents in MNRL column order:
# pos0 = (1, 0), pos1 = (0, 1), neg0 = (1, 1) / sqrt 2, neg1 = (1, 0) (row 1's negative: the text of row 0's positive)
Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
DOCS = [torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[R, R], [1.0, 0.0]])]
# cosines: row 0 -> [1, 0, 0.7071, 1]; row 1 -> [0, 1, 0.7071, 0]
EXPECTED_MASK = [[False, False, False, True], [False, False, False, False]]  # row 0 must not see neg1 (= its pos)


def test_text_mask_and_masked_logits():
    keys = torch.tensor([5, 6, 7, 5])  # token keys: neg1 has pos0's text
    loss, logits = masked_infonce(Q, DOCS, 1.0, "text", doc_keys=keys)
    assert torch.isinf(logits[0, 3]) and logits[0, 3] < 0
    assert logits[0, :3].tolist() == pytest.approx([1.0, 0.0, R], abs=1e-6)
    assert logits[1].tolist() == pytest.approx([0.0, 1.0, R, 0.0], abs=1e-6)
    # row 0: log(e + 1 + e^0.7071) - 1 = log(5.74639) - 1 = 0.74859
    # row 1: log(1 + e + e^0.7071 + 1) - 1 = log(6.74639) - 1 = 0.90897; mean 0.82878
    assert loss.item() == pytest.approx(0.82878, abs=1e-4)
    assert mask_counts(logits) == (1, 4)  # 2 rows x (4 columns - own positive and negative); 1 masked
    # nothing masked (score, margin 2): row 0 = log(e + 1 + e^0.7071 + e) - 1 = log(8.46467) - 1 = 1.13588;
    # mean with row 1 (0.90897): 1.02243 -- the masked false negative raised row 0's loss by 0.387
    plain, _ = masked_infonce(Q, DOCS, 1.0, "score", margin=2.0)
    assert plain.item() == pytest.approx(1.02243, abs=1e-4)


def test_score_mask_uses_the_positive_plus_margin():
    sim = torch.tensor([[1.0, 0.0, R, 1.0], [0.0, 1.0, R, 0.0]])
    # margin 0: 1.0 > 1.0 + 0 is false, nothing masked; margin -0.1: 1.0 > 0.9 masks row 0's column 3
    assert not false_negative_mask("score", sim, margin=0.0).any()
    assert false_negative_mask("score", sim, margin=-0.1).tolist() == EXPECTED_MASK


def test_id_mask_same_docid_and_same_query_positive():
    sim = torch.zeros(2, 4)
    # labels per row: (qid, positive, negative) id hashes; row 1's negative is doc 10, row 0's positive
    labels = torch.tensor([[1, 10, 11], [2, 12, 10]])
    assert false_negative_mask("id", sim, labels=labels).tolist() == EXPECTED_MASK
    # both rows of one query (qid 1): each row's positive is a positive of the other row's query too
    labels = torch.tensor([[1, 10, 11], [1, 12, 13]])
    assert false_negative_mask("id", sim, labels=labels).tolist() == [[False, True, False, False],
                                                                       [True, False, False, False]]


def test_config_default_and_validation():
    assert TrainConfig().mask_false_negatives == "none"
    assert TrainConfig(mask_false_negatives="score(0.10)").mask_false_negatives == "score(0.1)"
    with pytest.raises(HardnegError, match="mask_false_negatives"):
        TrainConfig(mask_false_negatives="sometimes")
    with pytest.raises(HardnegError, match="needs in_batch_negatives = true"):
        TrainConfig(mask_false_negatives="id", in_batch_negatives=False)


def test_prepare_rows_keeps_ids_for_the_label_column():
    rows = [{"qid": "q1", "query": "a", "pos": {"docid": "d1", "text": "x"}, "neg": [{"docid": "d2", "text": "y"}]},
            {"qid": "q2", "query": "b", "pos": {"docid": "d3", "text": "z"}, "neg": []}]
    prep = prepare_rows(rows, 1, "pad", 0)
    assert prep.ids == (("q1", "d1", "d2"), ("q2", "d3", "d2"))  # row 2 padded with the only other negative


@pytest.mark.parametrize("mode", ["id", "text", "score(0.1)", "score(-2.0)"])
def test_training_with_masking_runs(tmp_path, mode):
    from hardneg.testing import make_tiny_student
    from hardneg.train.trainer import fit

    student = make_tiny_student(tmp_path / "student")
    words = "cells genes protein cancer tumor patients study brain heart blood liver".split()
    rows = []
    for i in range(8):  # two rows per query: each row's positive is a false negative for the other in a batch
        q = i // 2
        rows.append({"qid": f"q{q}", "query": f"{words[q]} {words[q + 1]}",
                     "pos": {"docid": f"p{i}", "text": f"{words[i % 11]} {words[(i + 3) % 11]} p{i}"},
                     "neg": [{"docid": f"n{i}", "text": f"{words[(i + 5) % 11]} n{i}"}]})
    cfg = TrainConfig(student=str(student), batch_size=4, max_steps=2, learning_rate=1e-3, query_max_length=8,
                      doc_max_length=16, warmup_ratio=0.0, mask_false_negatives=mode)
    res = fit(rows, cfg, tmp_path / "out", progress=False)
    assert res.record["loss"]["class"] == "MaskedInfoNCELoss"
    assert res.record["loss"]["mask_false_negatives"] == mode.split("(")[0]
    assert math.isfinite(res.record["result"]["train_loss"])
    # 2 steps x 4 rows x (8 columns - the row's own positive and negative) in-batch candidates
    m = res.record["masking"]
    assert m["in_batch_candidates"] == 48 and 0 <= m["masked"] <= 48 and m["share"] == round(m["masked"] / 48, 6)
    if mode == "score(-2.0)":  # every cosine is above the positive's minus 2: every in-batch candidate is masked
        assert m["masked"] == 48
