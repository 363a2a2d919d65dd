"""Wikidata labels and aliases (synonyms) over SPARQL, politely: one query at a time, batched with VALUES.

The Wikidata Query Service is a shared public service: every query carries a descriptive
User-Agent, has a client timeout, and a 429/503 answer is retried only after the server's
Retry-After. A batch that still fails gets an outcome (rate_limited, server_error, timeout,
malformed, ...) and the other batches carry on; nothing about a failed batch is cached, so
the next run asks again.
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import time
import urllib.error
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from SPARQLWrapper import JSON, POST, SPARQLWrapper
from SPARQLWrapper.SPARQLExceptions import SPARQLWrapperException

from mesed_build.http import parse_retry_after

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://query.wikidata.org/sparql"
_QID = re.compile(r"^Q[1-9][0-9]*$")
_ENTITY_PREFIX = "http://www.wikidata.org/entity/"

# the outcomes a batch can have (the names are the drop reasons recorded in the store)
OK, EMPTY = "ok", "empty"
RATE_LIMITED, SERVER_ERROR, TIMEOUT, MALFORMED, CLIENT_ERROR, NETWORK_ERROR = (
    "rate_limited", "server_error", "timeout", "malformed", "client_error", "network_error",
)
FAILURES = (RATE_LIMITED, SERVER_ERROR, TIMEOUT, MALFORMED, CLIENT_ERROR, NETWORK_ERROR)


class SparqlFailure(Exception):
    """One failed attempt; `outcome` says what kind, `retry_after` what the server asked for (seconds)."""

    def __init__(self, outcome: str, message: str, retry_after: float | None = None, retryable: bool = False):
        super().__init__(message)
        self.outcome = outcome
        self.retry_after = retry_after
        self.retryable = retryable


@dataclass(frozen=True)
class EntityNames:
    qid: str
    label: str | None
    aliases: tuple[str, ...]


@dataclass
class BatchResult:
    qids: tuple[str, ...]
    outcome: str
    names: dict[str, EntityNames] = field(default_factory=dict)
    attempts: int = 0
    error: str | None = None


@dataclass
class SitelinkBatch:
    items: tuple[str, ...]  # the titles asked for
    outcome: str
    found: dict[str, str] = field(default_factory=dict)  # title -> QID
    attempts: int = 0
    error: str | None = None





def check_qids(qids: Iterable[str]) -> list[str]:
    out = []
    for qid in qids:
        if not _QID.match(qid or ""):
            raise ValueError(f"not a Wikidata item id: {qid!r} (expected Q followed by digits)")
        out.append(qid)
    return out


def names_query(qids: Sequence[str], language: str = "en") -> str:
    """One row per (item, label, alias): rdfs:label and skos:altLabel in `language` for the given items."""
    values = " ".join(f"wd:{q}" for q in check_qids(qids))
    if not re.match(r"^[a-z]{2,3}(-[a-z0-9]+)*$", language):
        raise ValueError(f"not a language code: {language!r}")
    return (
        "PREFIX wd: <http://www.wikidata.org/entity/>\n"
        "PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>\n"
        "PREFIX skos: <http://www.w3.org/2004/02/skos/core#>\n"
        "SELECT ?item ?label ?alt WHERE {\n"
        f"  VALUES ?item {{ {values} }}\n"
        f'  OPTIONAL {{ ?item rdfs:label ?label . FILTER(LANG(?label) = "{language}") }}\n'
        f'  OPTIONAL {{ ?item skos:altLabel ?alt . FILTER(LANG(?alt) = "{language}") }}\n'
        "}"
    )


def _sparql_string(value: str, language: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"@{language}'


def sitelinks_query(titles: Sequence[str], site: str, language: str) -> str:
    """The Wikidata item of each article title on `site` (e.g. https://en.wikipedia.org/)."""
    if not re.match(r"^https://[a-z0-9.-]+/$", site):
        raise ValueError(f"not a wiki site URL: {site!r} (expected e.g. https://en.wikipedia.org/)")
    values = " ".join(_sparql_string(t, language) for t in titles)
    return (
        "PREFIX schema: <http://schema.org/>\n"
        "SELECT ?title ?item WHERE {\n"
        f"  VALUES ?title {{ {values} }}\n"
        f"  ?article schema:about ?item ; schema:isPartOf <{site}> ; schema:name ?title .\n"
        "}"
    )


def parse_sitelinks(document) -> dict[str, str]:
    """title -> QID from a sparql-results+json answer to sitelinks_query."""
    if not isinstance(document, dict) or not isinstance(document.get("results"), dict) \
            or not isinstance(document["results"].get("bindings"), list):
        raise SparqlFailure(MALFORMED, "answer is not a SPARQL JSON results document (no results.bindings)")
    out: dict[str, str] = {}
    for binding in document["results"]["bindings"]:
        title, item = _value(binding, "title"), _value(binding, "item")
        if title and item and item.startswith(_ENTITY_PREFIX):
            out.setdefault(title, item[len(_ENTITY_PREFIX):])
    return out


def _value(binding: dict, *names: str) -> str | None:
    for name in names:
        cell = binding.get(name)
        if isinstance(cell, dict) and isinstance(cell.get("value"), str):
            return cell["value"]
    return None


def parse_names(document, asked: Sequence[str] = ()) -> dict[str, EntityNames]:
    """Labels and aliases per QID from a sparql-results+json document.

    Reads both our own shape (?item ?label ?alt, one alias a row) and the label-service shape
    (?item ?itemLabel ?itemAltLabel, aliases joined with ', ', as WDQS's wikibase:label returns
    them; an alias that itself holds ', ' is split there, which the label service leaves no way
    to avoid). Raises SparqlFailure(MALFORMED) when the document is not a results document.
    """
    if not isinstance(document, dict) or not isinstance(document.get("results"), dict):
        raise SparqlFailure(MALFORMED, "answer is not a SPARQL JSON results document (no 'results' object)")
    bindings = document["results"].get("bindings")
    if not isinstance(bindings, list):
        raise SparqlFailure(MALFORMED, "answer has no results.bindings list")
    labels: dict[str, str] = {}
    aliases: dict[str, dict[str, None]] = {}
    for binding in bindings:
        if not isinstance(binding, dict):
            raise SparqlFailure(MALFORMED, f"a binding is a {type(binding).__name__}, expected an object")
        item = _value(binding, "item")
        if not item or not item.startswith(_ENTITY_PREFIX):
            continue
        qid = item[len(_ENTITY_PREFIX):]
        label = _value(binding, "label", "itemLabel")
        if label and label != qid:  # the label service falls back to the bare QID
            labels.setdefault(qid, label)
        bucket = aliases.setdefault(qid, {})
        alt = _value(binding, "alt")
        if alt:
            bucket[alt.strip()] = None
        joined = _value(binding, "itemAltLabel")
        if joined:
            for part in joined.split(", "):
                if part.strip():
                    bucket[part.strip()] = None
    out = {}
    for qid in list(dict.fromkeys([*asked, *aliases])):
        label = labels.get(qid)
        names = tuple(a for a in (aliases.get(qid) or {}) if a != label)
        out[qid] = EntityNames(qid, label, names)
    return out


def _exception_outcome(exc: BaseException) -> SparqlFailure:
    """Map what SPARQLWrapper/urllib raise onto an outcome, keeping Retry-After."""
    if isinstance(exc, SparqlFailure):
        return exc
    if isinstance(exc, urllib.error.HTTPError):
        retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        if exc.code == 429:
            return SparqlFailure(RATE_LIMITED, "HTTP 429 Too Many Requests", retry_after, retryable=True)
        if exc.code >= 500:
            return SparqlFailure(SERVER_ERROR, f"HTTP {exc.code}", retry_after, retryable=True)
        return SparqlFailure(CLIENT_ERROR, f"HTTP {exc.code} {exc.reason}")
    if isinstance(exc, SPARQLWrapperException):
        # SPARQLWrapper turns 400/401/404/414/500 into its own exceptions and drops the headers
        name = type(exc).__name__
        if name == "EndPointInternalError":
            return SparqlFailure(SERVER_ERROR, "HTTP 500 (endpoint internal error)", retryable=True)
        return SparqlFailure(CLIENT_ERROR, f"{name}: {str(exc).splitlines()[0][:200]}")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return SparqlFailure(TIMEOUT, "no answer within the timeout", retryable=True)
    if isinstance(exc, urllib.error.URLError):
        if isinstance(exc.reason, (socket.timeout, TimeoutError)):
            return SparqlFailure(TIMEOUT, "no answer within the timeout", retryable=True)
        return SparqlFailure(NETWORK_ERROR, f"cannot reach the endpoint: {exc.reason}", retryable=True)
    if isinstance(exc, (ValueError, UnicodeDecodeError)):  # json.JSONDecodeError is a ValueError
        return SparqlFailure(MALFORMED, f"answer is not valid JSON: {str(exc)[:200]}")
    if isinstance(exc, (ConnectionError, OSError)):
        return SparqlFailure(NETWORK_ERROR, f"connection failed: {exc}", retryable=True)
    raise exc


class WikidataClient:
    """A SPARQLWrapper client for one endpoint: serial queries, timeout, Retry-After, bounded retries."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        user_agent: str,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 2.0,
        max_retry_after_s: float = 300.0,
        language: str = "en",
        batch_size: int = 200,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not user_agent or not re.search(r"(@|https?://)", user_agent):
            raise ValueError(
                f"user_agent {user_agent!r}: Wikimedia asks for a descriptive User-Agent with contact "
                "(an e-mail address or URL)"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.endpoint = endpoint
        self.user_agent = user_agent
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_retry_after_s = max_retry_after_s
        self.language = language
        self.batch_size = batch_size
        self.sleep = sleep
        self.queries_sent = 0

    @classmethod
    def from_options(cls, options: dict, **overrides) -> "WikidataClient":
        keys = ("timeout_s", "max_retries", "backoff_s", "max_retry_after_s", "language", "batch_size")
        kwargs = {k: options[k] for k in keys if k in options}
        return cls(options["endpoint"], user_agent=options["user_agent"], **{**kwargs, **overrides})

    def _query_once(self, query: str):
        sparql = SPARQLWrapper(self.endpoint, agent=self.user_agent)
        sparql.setMethod(POST)  # 200 QIDs make a long query; POST keeps it out of URL length limits
        sparql.setReturnFormat(JSON)
        # SPARQLWrapper keeps whole seconds only (int()), so round up rather than lose a sub-second timeout
        sparql.setTimeout(max(1, math.ceil(self.timeout_s)))
        sparql.setQuery(query)
        self.queries_sent += 1
        try:
            response = sparql.query()
            raw = response.response.read()
        except BaseException as exc:  # noqa: BLE001 - every failure is mapped to an outcome below
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise _exception_outcome(exc) from exc
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise SparqlFailure(MALFORMED, f"answer is not valid JSON: {str(exc)[:200]}") from exc

    def _wait_s(self, failure: SparqlFailure, attempt: int) -> float:
        if failure.retry_after is not None:
            return min(failure.retry_after, self.max_retry_after_s)
        return min(self.backoff_s * (2 ** (attempt - 1)), self.max_retry_after_s)

    def run(self, query: str) -> tuple[object, int]:
        """The parsed JSON answer and the number of attempts; raises SparqlFailure after the last retry."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._query_once(query), attempt
            except SparqlFailure as failure:
                if not failure.retryable or attempt > self.max_retries:
                    failure.attempts = attempt  # type: ignore[attr-defined]
                    raise
                if failure.retry_after is not None and failure.retry_after > self.max_retry_after_s:
                    # the server asks for a longer pause than this build allows: give up on the batch now
                    failure.attempts = attempt  # type: ignore[attr-defined]
                    raise
                wait = self._wait_s(failure, attempt)
                log.info("SPARQL %s on attempt %d; retrying in %.1f s", failure.outcome, attempt, wait)
                self.sleep(wait)

    def fetch_batch(self, qids: Sequence[str]) -> BatchResult:
        qids = tuple(check_qids(qids))
        try:
            document, attempts = self.run(names_query(qids, self.language))
            names = parse_names(document, qids)
        except SparqlFailure as failure:
            return BatchResult(qids, failure.outcome, attempts=getattr(failure, "attempts", 1), error=f"{self.endpoint}: {failure}")
        wanted = {q: names[q] for q in qids}  # answers about QIDs we did not ask for are not ours to cache
        outcome = OK if any(n.label or n.aliases for n in wanted.values()) else EMPTY
        return BatchResult(qids, outcome, wanted, attempts=attempts)

    def fetch(self, qids: Iterable[str], on_batch: Callable[[BatchResult], None] | None = None) -> list[BatchResult]:
        """Labels and aliases for many QIDs, `batch_size` per query, one query at a time.

        `on_batch` sees each result as soon as it is in (the stage caches it there), so a crash
        later on loses nothing already fetched.
        """
        unique = list(dict.fromkeys(check_qids(qids)))
        results = []
        for i in range(0, len(unique), self.batch_size):
            result = self.fetch_batch(unique[i : i + self.batch_size])
            if on_batch is not None:
                on_batch(result)
            results.append(result)
        return results

    def fetch_qids(self, titles: Iterable[str], *, site: str = "https://en.wikipedia.org/", language: str = "en",
                   on_batch: Callable[[SitelinkBatch], None] | None = None) -> list[SitelinkBatch]:
        """The Wikidata item of each article title, `batch_size` titles per query, one query at a time."""
        unique = list(dict.fromkeys(titles))
        results = []
        for i in range(0, len(unique), self.batch_size):
            batch = tuple(unique[i : i + self.batch_size])
            try:
                document, attempts = self.run(sitelinks_query(batch, site, language))
                found = parse_sitelinks(document)
            except SparqlFailure as failure:
                result = SitelinkBatch(batch, failure.outcome, attempts=getattr(failure, "attempts", 1),
                                       error=f"{self.endpoint}: {failure}")
            else:
                found = {t: found[t] for t in batch if t in found}
                result = SitelinkBatch(batch, OK if found else EMPTY, found, attempts)
            if on_batch is not None:
                on_batch(result)
            results.append(result)
        return results


def utc_timestamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
