"""Benchmark: labels per second the review-queue web app sustains, SQLite (WAL) against PostgreSQL.

N annotators (threads, one HTTP client each) log in and work through the queue of a demo-like store
(the real sentences and photos of tests/annotation/demo.py) against the live app under uvicorn on
127.0.0.1: each label is a GET /queue (lease + render) and a POST /label. Every item goes to all N
annotators (overlap share 1, k = N) and the search engine's top-1 is judged too where it differs
(calibration share 1), so the queue holds (48 + 32) * N labels. Afterwards the store must hold exactly
the submitted labels. Labels/s = labels / wall time from the first request after login to the last.

    python bench/annotation_throughput.py    # writes bench/results/annotation_throughput.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from annotation import auth, queue  # noqa: E402
from annotation.app import AppSettings, create_app  # noqa: E402
from mesed_build import store as st  # noqa: E402
from mesed_build.store import Store  # noqa: E402
from tests.annotation.conftest import CSRF, ITEM  # noqa: E402
from tests.annotation.demo import populate  # noqa: E402
from tests.annotation.live import LiveServer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MACHINE = "2-core x86_64 CPU, 24 GB, Python 3.11"
PG_URL = os.environ.get("MESED_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PASSWORD = "benchmark password 123"


def annotate(url: str, name: str, start: threading.Barrier, out: dict) -> None:
    import httpx

    n = 0
    with httpx.Client(base_url=url, timeout=120) as client:
        page = client.get("/login")
        client.post("/login", data={"username": name, "password": PASSWORD, "csrf": CSRF.search(page.text).group(1)})
        start.wait()
        while True:
            page = client.get("/queue")
            item = ITEM.search(page.text)
            if item is None:
                break
            label = ("ES", "S", "IR")[n % 3]
            data = {"csrf": CSRF.search(page.text).group(1), "item_id": item.group(1), "label": label}
            if label == "IR" and 'value="none"' in page.text:
                data["replacement"] = "none"
            response = client.post("/label", data=data, follow_redirects=False)
            if response.status_code != 303:
                raise RuntimeError(f"{name}: POST /label answered {response.status_code}")
            n += 1
    out[name] = n


def run(url: str, annotators: int, workdir: Path) -> dict:
    store = Store(url)
    overlap = {"overlap_share": 1.0, "overlap_k": annotators} if annotators > 1 else {"overlap_share": 0.0}
    populate(store, workdir / "images", annotation={**overlap, "calibration_share": 1.0})
    options = queue.options_for_store(store)
    items = queue.sync_items(store, options)["items"]
    names = [f"bench{i}" for i in range(annotators)]
    for name in names:
        auth.add_user(store, name, PASSWORD)
    app = create_app(store, AppSettings(content_root=workdir / "images", options=options))
    done: dict[str, int] = {}
    start = threading.Barrier(annotators + 1)
    with LiveServer(app) as server:
        threads = [threading.Thread(target=annotate, args=(server.url, n, start, done)) for n in names]
        for t in threads:
            t.start()
        start.wait()
        began = time.perf_counter()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - began
    stored = store.count(st.annotation_labels)
    expected = items * annotators
    store.close()
    if sum(done.values()) != stored or stored != expected:
        raise SystemExit(f"{url}: submitted {sum(done.values())}, stored {stored}, expected {expected}")
    return {"annotators": annotators, "labels": stored, "seconds": round(seconds, 2),
            "labels_per_second": round(stored / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--annotators", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    auth.use_password_hasher(auth.PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1))
    results = []
    for annotators in args.annotators:
        with tempfile.TemporaryDirectory() as tmp:
            results.append({"backend": "sqlite", **run(f"sqlite:///{tmp}/store.sqlite", annotators, Path(tmp))})
        schema = f"annot_bench_{uuid.uuid4().hex[:8]}"
        engine = sa.create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        try:
            with tempfile.TemporaryDirectory() as tmp:
                results.append({"backend": "postgresql",
                                **run(f"{PG_URL}?options=-csearch_path%3D{schema}", annotators, Path(tmp))})
        finally:
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            engine.dispose()
    RESULTS.mkdir(exist_ok=True)
    payload = {"machine": MACHINE, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
               "results": results}
    (RESULTS / "annotation_throughput.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = ["# Annotation web app: labels per second over HTTP, SQLite (WAL) vs PostgreSQL", "",
             f"Machine: {MACHINE} (shared with other jobs while it ran). Run on {payload['date']}. Each label is "
             "GET /queue + POST /label against uvicorn on 127.0.0.1; every item goes to every annotator.", "",
             "| annotators | backend | labels | seconds | labels/s | vs SQLite |", "|---:|---|---:|---:|---:|---:|"]
    for r in results:
        base = next(x for x in results if x["annotators"] == r["annotators"] and x["backend"] == "sqlite")
        ratio = r["labels_per_second"] / base["labels_per_second"]
        lines.append(f"| {r['annotators']} | {r['backend']} | {r['labels']} | {r['seconds']} | "
                     f"{r['labels_per_second']} | {ratio:.2f}x |")
    lines += ["", "Every run checks that the store holds exactly the submitted labels.", "",
              "Reproduce: `python bench/annotation_throughput.py`."]
    (RESULTS / "annotation_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
