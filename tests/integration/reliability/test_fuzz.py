"""A short fuzz run (the full one is `python -m ops.drills.fuzz`): no 5xx on any route, the worker alive afterwards."""

from __future__ import annotations

import httpx

from ops.drills.fuzzing import hypothesis_bodies, schemathesis_run


def test_schemathesis_finds_no_server_error(bert_stack):
    code, cases, output = schemathesis_run(bert_stack.url, max_examples=5, workers=1, timeout=240)
    assert code == 0, output
    assert cases >= 200, output
    assert bert_stack.worker.process.poll() is None


def test_hypothesis_bodies_on_every_route_find_no_server_error(bert_stack):
    report = hypothesis_bodies(bert_stack.url, bert_stack.model_id, cases_per_route=25)
    assert report.findings == [], report.findings
    assert report.cases >= 150
    assert report.statuses["200"] > 0 and report.statuses["422"] > 0  # both servable and broken bodies were sent
    assert bert_stack.worker.process.poll() is None
    body = {"model": bert_stack.model_id, "query": {"text": "q"}, "passages": [{"text": "p"}]}
    assert httpx.post(bert_stack.url + "/v1/ranking", json=body, timeout=30).status_code == 200
