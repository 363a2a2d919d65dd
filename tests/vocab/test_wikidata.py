"""The Wikidata SPARQL client against a local endpoint replaying real Wikidata data, with faults."""

from __future__ import annotations

import json

import pytest

from mesed_build.http import parse_retry_after

from mesed_build.vocab import wikidata as wd
from tests.vocab.sparql_server import FIXTURES, Fault, SparqlServer

UA = "mesed-build-tests/0.1 (https://example.org/mesed-build; tests@example.org)"


@pytest.fixture
def server():
    with SparqlServer() as s:
        yield s


def client(server, **kw):
    sleeps: list[float] = []
    options = {"timeout_s": 5, "max_retries": 2, "backoff_s": 0.01, "batch_size": 2, "sleep": sleeps.append, **kw}
    return wd.WikidataClient(server.endpoint, user_agent=UA, **options), sleeps


def test_parses_the_real_label_service_answer():
    document = json.loads((FIXTURES / "sparql-results-with-aliases.json").read_text(encoding="utf-8"))
    names = wd.parse_names(document)
    kierkegaard = names["Q6512"]  # listed twice in the recording: merged
    assert kierkegaard.label == "Søren Kierkegaard"
    assert kierkegaard.aliases == (
        "Climacus", "Kierkegaard", "Anti-Climacus", "Søren Aabye Kierkegaard", "Soren Kierkegaard", "Victor Eremita",
    )
    assert names["Q4137"].aliases == ()  # Elsa Triolet: no itemAltLabel in the answer
    assert names["Q8006"].aliases == ("Kurosawa Akira",)
    assert len(names) == 48  # 50 rows, two items recorded twice


def test_fetch_serves_real_aliases_in_batches_over_post(server):
    c, _ = client(server)
    results = c.fetch(["Q42", "Q140", "Q6512", "Q42"])  # duplicates are asked once
    assert [r.qids for r in results] == [("Q42", "Q140"), ("Q6512",)]
    assert [r.outcome for r in results] == ["ok", "ok"]
    assert results[0].names["Q42"].label == "Douglas Adams"
    assert results[0].names["Q42"].aliases == ("Douglas Noël Adams", "Douglas Noel Adams", "Douglas N. Adams")
    assert results[0].names["Q140"].aliases == ("African lion", "Asiatic Lion")  # the label 'lion' is not an alias
    assert "Victor Eremita" in results[1].names["Q6512"].aliases
    assert len(server.requests) == 2
    for request in server.requests:
        assert request["method"] == "POST"
        assert request["headers"]["User-Agent"] == UA
        assert "VALUES ?item" in request["query"]
    # one query at a time
    assert server.requests[0]["end"] <= server.requests[1]["start"]


def test_empty_answer_is_counted_as_empty(server):
    c, _ = client(server)
    [result] = c.fetch(["Q999999999"])
    assert result.outcome == "empty"
    assert result.names["Q999999999"].label is None and result.names["Q999999999"].aliases == ()


def test_429_waits_for_retry_after_then_succeeds(server):
    server.script(Fault(429, (("Retry-After", "7"),)))
    c, sleeps = client(server)
    [result] = c.fetch(["Q42"])
    assert result.outcome == "ok" and result.attempts == 2
    assert sleeps == [7.0]


def test_429_retry_after_longer_than_allowed_gives_the_batch_up(server):
    server.script(Fault(429, (("Retry-After", "3600"),)))
    c, sleeps = client(server, max_retry_after_s=60)
    results = c.fetch(["Q42", "Q140", "Q6512"])
    assert [r.outcome for r in results] == ["rate_limited", "ok"]  # the next batch still runs
    assert sleeps == []


def test_persistent_429_is_rate_limited_after_the_retries(server):
    server.script(*[Fault(429, (("Retry-After", "1"),))] * 3)
    c, sleeps = client(server, max_retries=2)
    [result] = c.fetch(["Q42"])
    assert result.outcome == "rate_limited" and result.attempts == 3
    assert sleeps == [1.0, 1.0]


def test_500_is_retried_with_backoff_and_reported(server):
    server.script(*[Fault(500)] * 3)
    c, sleeps = client(server, max_retries=2, backoff_s=0.5)
    results = c.fetch(["Q42", "Q140", "Q6512"])
    assert [r.outcome for r in results] == ["server_error", "ok"]
    assert "500" in results[0].error
    assert sleeps == [0.5, 1.0]


def test_503_with_retry_after_date(server):
    server.script(Fault(503, (("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT"),)))
    c, sleeps = client(server)
    [result] = c.fetch(["Q140"])
    assert result.outcome == "ok"
    assert sleeps == [0.0]  # a date in the past: no wait


def test_timeout_is_reported_and_later_batches_survive(server):
    server.script(Fault(delay_s=2.5), Fault(delay_s=2.5))
    c, _ = client(server, timeout_s=1, max_retries=1)
    results = c.fetch(["Q42", "Q140", "Q6512"])
    assert [r.outcome for r in results] == ["timeout", "ok"]
    assert "timeout" in results[0].error


def test_malformed_json_is_not_retried_and_not_fatal(server):
    server.script(Fault(200, body=b'{"head": {"vars": ["item"]}, "results": {"bindings": [{"item": '))
    c, sleeps = client(server)
    results = c.fetch(["Q42", "Q140", "Q6512"])
    assert [r.outcome for r in results] == ["malformed", "ok"]
    assert sleeps == []
    assert len(server.requests) == 2


def test_json_that_is_not_a_results_document_is_malformed(server):
    server.script(Fault(200, body=b'{"error": "query timeout"}'))
    c, _ = client(server)
    [result] = c.fetch(["Q42"])
    assert result.outcome == "malformed"


def test_sitelinks_by_title(server):
    c, _ = client(server)
    results = c.fetch_qids(["Douglas Adams", "Lion", "No such article"])
    assert results[0].found == {"Douglas Adams": "Q42", "Lion": "Q140"}
    assert results[1].outcome == "empty"
    assert "schema:isPartOf <https://en.wikipedia.org/>" in server.requests[0]["query"]  # offline-ok: text of the query sent to the local server


def test_bad_input_is_refused_before_any_query():
    with pytest.raises(ValueError, match="Wikidata item id"):
        wd.names_query(["Q42", "42; DROP"])
    with pytest.raises(ValueError, match="User-Agent"):
        wd.WikidataClient("http://127.0.0.1:9/sparql", user_agent="python-urllib")


def test_parse_retry_after():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
