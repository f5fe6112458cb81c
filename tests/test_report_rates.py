"""`hardneg fn-report`: nDCG vs injection rate with paired tests and trap rates, from synthetic records."""
from __future__ import annotations

import json

import pytest

from conftest import run_cli
from hardneg.errors import HardnegError
from hardneg.report.rates import parse_rate_args, summarise_rates

QIDS = [f"q{i}" for i in range(12)]


def _record(strategy: str, seed: int, ndcg: float, trap_recall: float | None = None, teacher: str = "t") -> dict:
    pq = {q: {"ndcg@10": ndcg, "recall@100": 1.0} for q in QIDS}
    mining = {"rows": 10}
    if trap_recall is not None:
        mining["traps"] = {"trap_recall": trap_recall, "rows_with_trap": trap_recall, "trap_share_all": 0.1,
                           "real_kept": 1.0}
    return {"key": f"{strategy}/{seed}",
            "point": {"teacher": teacher, "student": "s", "strategy": strategy, "seed": seed},
            "metrics": {"test": {"base": {"ndcg@10": 0.1}, "finetuned": {"ndcg@10": ndcg}}},
            "per_query": {"test": {"base": pq, "finetuned": pq}}, "mining": mining}


def _write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


@pytest.fixture
def rate_files(tmp_path):
    # rate 0 also ran `none` and a second teacher, which the other rate lacks: left out of the comparison
    r0 = _write(tmp_path / "r0.jsonl", [_record("topk(4)", 0, 0.60), _record("topk(4)", 1, 0.62),
                                        _record("percpos(0.95)+topk(4)", 0, 0.61), _record("none", 0, 0.55),
                                        _record("topk(4)", 0, 0.99, teacher="t2"),
                                        _record("percpos(0.95)+topk(4)", 0, 0.10, teacher="t2")])
    r3 = _write(tmp_path / "r3.jsonl", [_record("topk(4)", 0, 0.50, 0.6), _record("topk(4)", 1, 0.54, 0.6),
                                        _record("percpos(0.95)+topk(4)", 0, 0.60, 0.1)])
    return r0, r3


def test_rates_by_hand(rate_files):
    from hardneg.report import read_results
    r0, r3 = rate_files
    rows = summarise_rates([(0.0, read_results(r0)), (0.3, read_results(r3))])
    got = {(r["strategy"], r["rate"]): r for r in rows}
    assert set(got) == {("topk(4)", 0.0), ("topk(4)", 0.3), ("percpos(0.95)+topk(4)", 0.0),
                        ("percpos(0.95)+topk(4)", 0.3)}
    naive3 = got[("topk(4)", 0.3)]
    assert naive3["test ndcg@10"][0] == pytest.approx(0.52)  # (0.50 + 0.54) / 2, sd 0.02828
    assert naive3["test ndcg@10"][1] == pytest.approx(0.0282842712)
    # vs rate 0 over seeds {0, 1}: per query (0.50+0.54)/2 - (0.60+0.62)/2 = -0.09 on every query
    assert naive3["vs rate0"]["diff"] == pytest.approx(-0.09) and naive3["vs rate0"]["p"] < 0.01
    assert naive3["traps"]["trap_recall"] == pytest.approx(0.6)
    pp3 = got[("percpos(0.95)+topk(4)", 0.3)]
    # vs naive at rate 0.3 over the shared seed 0 only: 0.60 - 0.50
    assert pp3["vs naive"]["diff"] == pytest.approx(0.10) and pp3["vs naive"]["seeds"] == [0]
    assert pp3["vs rate0"]["diff"] == pytest.approx(-0.01)
    assert "vs rate0" not in got[("percpos(0.95)+topk(4)", 0.0)] and "traps" not in got[("topk(4)", 0.0)]


def test_cli_writes_byte_stable_files(rate_files, tmp_path, capsys):
    r0, r3 = rate_files
    for out in ("a", "b"):
        code, _, err = run_cli(["fn-report", "--rate", f"0={r0}", "--rate", f"0.3={r3}", "--out",
                                str(tmp_path / out), "-q"], capsys)
        assert code == 0, err
    for name in ("table.md", "table.csv", "fig_rates.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    table = (tmp_path / "a" / "table.md").read_text()
    assert "`none`" not in table and "| `topk(4)` | 0.3 | 2 | 0.5200 ± 0.0283 |" in table
    assert "60.0%" in table and "10.0%" in table


@pytest.mark.parametrize("args", [["0.3=x"], ["zero=a", "0.3=b"], ["1.5=a", "0=b"], ["0=a", "0=b"], ["0a"]])
def test_bad_rate_args(args):
    with pytest.raises(HardnegError):
        parse_rate_args(args)


def test_cli_bad_rate_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(["fn-report", "--rate", "0.3", "--out", str(tmp_path / "o"), "-q"], capsys)
    assert code == 2 and "Traceback" not in err and not (tmp_path / "o").exists()


def test_teacher_student_pair_must_be_unique_across_rates():
    a = [_record("topk(4)", 0, 0.6), _record("topk(4)", 0, 0.6, teacher="t2")]
    with pytest.raises(HardnegError, match="several"):  # both teachers ran at both rates: which one is the study?
        summarise_rates([(0.0, a), (0.3, a)])
    with pytest.raises(HardnegError, match="no \\(teacher, student\\)"):
        summarise_rates([(0.0, [_record("topk(4)", 0, 0.6)]), (0.3, [_record("topk(4)", 0, 0.5, teacher="t2")])])
