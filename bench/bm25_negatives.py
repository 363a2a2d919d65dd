"""Benchmark: mining BM25 hard negatives for 15,000 names out of 1,000,000 titles, against brute-force rank-bm25.

Titles: every article title of the real enwiki dump excerpt shipped by the gensim wheel and every title its
articles link to (~21,000 real Wikipedia titles), then deterministic recombinations of their words up to
--titles (each new title takes the word count of a random real title and draws its words from the real
titles' running text, so word frequencies stay those of real titles). Queries: --queries real titles, in a
seeded order; each query excludes its own title, as a target never retrieves itself.

In separate processes (peak memory = the process's maximum resident set size):
* ours: mesed_build.vocab.bm25.TitleIndex (inverted index + MaxScore), index build + top-k for every query;
* rank-bm25 0.2.2 BM25Okapi: index build + get_scores over every title, for the first --brute queries only
  (about 0.2 s a query at a million titles: all 15,000 would take close to an hour).
The top k of both are compared on the brute-force subsample (documents and scores, ties by position):
the overlap must be 100%.

    python bench/bm25_negatives.py            # writes bench/results/bm25_negatives.{json,md}
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.resources
import json
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DUMP = str(importlib.resources.files("gensim") / "test" / "test_data"
           / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
MACHINE = "2-core x86_64 CPU, 24 GB, Python 3.11"


def real_titles() -> list[str]:
    from mesed_build.wiki.dump import iter_dump_pages, outgoing_links

    titles: dict[str, None] = {}
    for page in iter_dump_pages(DUMP):
        if page.namespace == 0:
            titles[page.title] = None
            titles.update(dict.fromkeys(sorted(outgoing_links(page.text)[0])))
    return list(titles)


def make_corpus(n_titles: int, n_queries: int, seed: int) -> tuple[list[str], list[int], int]:
    """(titles, query doc positions, number of real titles); deterministic from the seed."""
    real = real_titles()
    if n_queries > len(real):
        raise SystemExit(f"--queries {n_queries}: the dump excerpt has only {len(real)} real titles")
    rng = random.Random(seed)
    words_of = [t.split() for t in real]
    running_text = [w for words in words_of for w in words]
    titles = list(real)
    seen = set(titles)
    while len(titles) < n_titles:
        template = words_of[rng.randrange(len(words_of))]
        title = " ".join(running_text[rng.randrange(len(running_text))] for _ in template)
        if title not in seen:
            seen.add(title)
            titles.append(title)
    order = list(range(len(real)))
    random.Random(seed + 1).shuffle(order)
    return titles, order[:n_queries], len(real)


# -- workers: each in its own process ------------------------------------------------------------------


def _worker(kind: str, n_titles: int, n_queries: int, n_brute: int, k: int, seed: int) -> dict:
    started = time.perf_counter()
    titles, queries, n_real = make_corpus(n_titles, n_queries, seed)
    prep_s = time.perf_counter() - started
    from mesed_build.vocab.bm25 import TitleIndex, brute_force_top_k, tokenize_title

    out: dict = {"prep_s": prep_s, "titles": len(titles), "real_titles": n_real}
    wall, cpu = time.perf_counter, time.process_time
    if kind == "ours":
        t0, c0 = wall(), cpu()
        index = TitleIndex(titles)
        t1, c1 = wall(), cpu()
        results = [index.top_k_docs(titles[q], k, [q]) for q in queries]
        t2, c2 = wall(), cpu()
        out.update(terms=len(index.vocab), postings=int(len(index.post_doc)), hits=sum(len(r) for r in results),
                   queries=len(queries), subsample=results[:n_brute])
    else:
        from rank_bm25 import BM25Okapi

        t0, c0 = wall(), cpu()
        brute = BM25Okapi([tokenize_title(t) for t in titles])
        t1, c1 = wall(), cpu()
        results = [brute_force_top_k(brute, tokenize_title(titles[q]), k, [q]) for q in queries[:n_brute]]
        t2, c2 = wall(), cpu()
        out.update(queries=n_brute, subsample=results)
    out.update(build_s=t1 - t0, query_s=t2 - t1, build_cpu_s=c1 - c0, query_cpu_s=c2 - c1)
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _run_worker(kind: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--titles", str(args.titles), "--queries", str(args.queries),
           "--brute", str(args.brute), "--k", str(args.k), "--seed", str(args.seed)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    result["process_wall_s"] = wall
    return result


def _markdown(r: dict) -> str:
    ours, brute = r["ours"], r["rank_bm25"]

    def row(name: str, m: dict) -> str:
        return (f"| {name} | {m['queries']:,} | {m['build_s']:.1f} / {m['build_cpu_s']:.1f} | "
                f"{m['query_s']:.1f} / {m['query_cpu_s']:.1f} | {1000 * m['query_s'] / m['queries']:.2f} / "
                f"{1000 * m['query_cpu_s'] / m['queries']:.2f} | {m['build_s'] + m['query_s']:.1f} / "
                f"{m['build_cpu_s'] + m['query_cpu_s']:.1f} | {m['maxrss_mb']:.0f} |")

    return "\n".join([
        "# BM25 hard negatives: inverted index vs brute-force rank-bm25",
        "",
        f"Machine: {r['machine']} (shared with other jobs while it ran, so wall times are inflated; CPU "
        f"seconds of the measuring process are given beside them). {r['titles']:,} titles "
        f"({r['real_titles']:,} real enwiki titles from the gensim dump excerpt, the rest deterministic "
        f"recombinations of their words), {r['queries']:,} query names (real titles), top {r['k']}, each query "
        f"excluding its own title. Run on {r['date']}.",
        "",
        "| | queries | index build (s, wall / CPU) | queries (s, wall / CPU) | per query (ms, wall / CPU) "
        "| total (s, wall / CPU) | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        row("ours: TitleIndex (inverted index + MaxScore)", ours),
        row("rank-bm25 BM25Okapi, brute force (subsample)", brute),
        "",
        f"- Speed-up per query: **{r['speedup_per_query']:.0f}x** wall, {r['speedup_per_query_cpu']:.0f}x CPU.",
        f"- All {r['queries']:,} queries, index build included: ours **{r['ours_total_s']:.1f} s** wall "
        f"({r['ours_total_cpu_s']:.1f} s CPU; goal: under 30 s); rank-bm25 extrapolated "
        f"{r['brute_total_extrapolated_s'] / 60:.0f} min wall ({r['brute_total_extrapolated_cpu_s'] / 60:.0f} min CPU), "
        f"{r['speedup_total']:.0f}x wall / {r['speedup_total_cpu']:.0f}x CPU.",
        f"- Top-{r['k']} overlap on the {brute['queries']} subsample queries: **{100 * r['overlap']:.1f}%** "
        f"(documents, scores and order identical in {r['identical_lists']}/{brute['queries']} lists).",
        f"- Title preparation (reading the dump + recombination, not counted above): {ours['prep_s']:.1f} s wall.",
        "",
        "Reproduce: `python bench/bm25_negatives.py` (about 6 minutes here, most of it rank-bm25).",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--titles", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=15_000)
    parser.add_argument("--brute", type=int, default=100, help="queries scored by brute-force rank-bm25")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=("ours", "rank_bm25"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.titles, args.queries, args.brute, args.k, args.seed)))
        return

    ours = _run_worker("ours", args)
    brute = _run_worker("rank_bm25", args)
    pairs = list(zip(ours.pop("subsample"), brute.pop("subsample")))
    overlap_hits = sum(len({d for d, _ in a} & {d for d, _ in b}) for a, b in pairs)
    overlap_total = sum(len(b) for _, b in pairs)
    identical = sum(1 for a, b in pairs if [tuple(x) for x in a] == [tuple(x) for x in b])
    per_query_ours = ours["query_s"] / ours["queries"]
    per_query_brute = brute["query_s"] / brute["queries"]
    brute_total = brute["build_s"] + per_query_brute * ours["queries"]
    per_query_brute_cpu = brute["query_cpu_s"] / brute["queries"]
    ours_cpu = ours["build_cpu_s"] + ours["query_cpu_s"]
    brute_total_cpu = brute["build_cpu_s"] + per_query_brute_cpu * ours["queries"]
    result = {
        "machine": MACHINE,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "versions": {"rank-bm25": importlib.metadata.version("rank-bm25"), "numpy": importlib.metadata.version("numpy")},
        "titles": ours["titles"],
        "real_titles": ours["real_titles"],
        "queries": ours["queries"],
        "k": args.k,
        "ours": ours,
        "rank_bm25": brute,
        "ours_total_s": ours["build_s"] + ours["query_s"],
        "brute_total_extrapolated_s": brute_total,
        "speedup_per_query": per_query_brute / per_query_ours,
        "speedup_total": brute_total / (ours["build_s"] + ours["query_s"]),
        "ours_total_cpu_s": ours_cpu,
        "brute_total_extrapolated_cpu_s": brute_total_cpu,
        "speedup_per_query_cpu": per_query_brute_cpu / (ours["query_cpu_s"] / ours["queries"]),
        "speedup_total_cpu": brute_total_cpu / ours_cpu,
        "overlap": overlap_hits / overlap_total if overlap_total else 1.0,
        "identical_lists": identical,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bm25_negatives.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out / "bm25_negatives.md").write_text(_markdown(result), encoding="utf-8")
    print(_markdown(result))


if __name__ == "__main__":
    main()
