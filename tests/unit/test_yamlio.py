from __future__ import annotations

from kfboot.yamlio import dump_all, load, load_all


def test_dates_and_equals_stay_strings() -> None:
    doc = load("date: 2024-01-01\nts: 2001-12-14t21:59:43.10-05:00\neq: =\nn: 3\nb: true\n")
    assert doc == {"date": "2024-01-01", "ts": "2001-12-14t21:59:43.10-05:00", "eq": "=", "n": 3, "b": True}


def test_multi_document_round_trip() -> None:
    docs = [d for d in load_all("a: 1\n---\n---\nb: [x, y]\n") if d]
    assert docs == [{"a": 1}, {"b": ["x", "y"]}]
    assert [d for d in load_all(dump_all(docs)) if d] == docs
