"""Benchmark: wikitext -> sentences with exact mention spans, against wikiextractor's text extraction.

On a pages-articles dump (default: the real enwiki excerpt shipped by the gensim wheel) it measures, each in a
fresh process and best of --repeat runs, interleaved:

* ours, full: every namespace-0 non-redirect article -> article_paragraphs(wanted=None) -> split_paragraph;
* ours, fast path: the same with wanted = the link targets of the list page --list-page
  ("List of anthropologists"), as the sentences stage runs it;
* wikiextractor 3.1.0: `python -m wikiextractor.WikiExtractor --links --processes 1 -o TMP DUMP`.

Speeds are articles (and sentences) per second of process wall time, dump reading included; peak memory is
the process's maximum resident set size. Our in-process times are reported too, split into dump reading,
extraction (article_paragraphs) and segmentation (split_paragraph).

    python bench/extract_sentences.py            # writes bench/results/extract_sentences.{json,md}
"""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def default_dump() -> str:
    """gensim's enwiki excerpt, found without importing gensim (which would weigh on the worker)."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("gensim is not installed: pass --dump PATH to a pages-articles .xml.bz2")
    return str(
        Path(spec.submodule_search_locations[0])
        / "test"
        / "test_data"
        / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    )


MACHINE = "2-core x86_64 CPU, 24 GB, Python 3.11"


# -- worker: runs in its own process -----------------------------------------------------------------


def wanted_targets(dump: str, list_page: str) -> list[str]:
    """The article-link targets of a list page in the dump (what the classes stage makes entities of)."""
    from mesed_build.sentences.wikitext import article_paragraphs
    from mesed_build.wiki.dump import iter_dump_pages

    page = next((p for p in iter_dump_pages(dump) if p.title == list_page), None)
    if page is None:
        raise SystemExit(f"{dump}: no page titled {list_page!r} to take the wanted link targets from")
    return sorted({link.target for p in article_paragraphs(page.text) for link in p.links})


def _worker(dump: str, wanted_file: str | None) -> dict:
    """One measured pass; phase times are CPU seconds of this process (robust to other load)."""
    clock = time.process_time
    started = clock()
    from mesed_build.sentences.segment import split_paragraph
    from mesed_build.sentences.wikitext import article_paragraphs
    from mesed_build.wiki.dump import iter_dump_pages

    wanted = None
    wanted_size = None
    if wanted_file:
        # the stage knows its vocabulary before it reads any article
        targets = frozenset(json.loads(Path(wanted_file).read_text(encoding="utf-8")))
        wanted, wanted_size = targets.__contains__, len(targets)

    drops: collections.Counter = collections.Counter()
    counts = collections.Counter()
    extract_s = split_s = 0.0
    run_start = clock()
    for page in iter_dump_pages(dump):
        if page.namespace != 0 or page.redirect_target is not None:
            continue
        counts["articles"] += 1
        t0 = clock()
        paragraphs = article_paragraphs(page.text, wanted=wanted, drops=drops)
        t1 = clock()
        for paragraph in paragraphs:
            sentences = split_paragraph(paragraph, drops)
            counts["sentences"] += len(sentences)
            counts["mentions"] += sum(len(s.mentions) for s in sentences)
            counts["sentence_chars"] += sum(len(s.text) for s in sentences)
        t2 = clock()
        extract_s += t1 - t0
        split_s += t2 - t1
        counts["paragraphs"] += len(paragraphs)
        counts["articles_with_paragraphs"] += bool(paragraphs)
        counts["links"] += sum(len(p.links) for p in paragraphs)
        counts["wikitext_chars"] += len(page.text)
    run_s = clock() - run_start
    return {
        "counts": dict(counts),
        "drops": dict(drops),
        "wanted_targets": wanted_size,
        "run_s": run_s,
        "extract_s": extract_s,
        "split_s": split_s,
        "read_s": run_s - extract_s - split_s,
        "imports_s": run_start - started,
    }


# -- driver ------------------------------------------------------------------------------------------


# A child's ru_maxrss starts at its parent's resident size (Linux records the pre-exec size), so commands
# are started from this bare launcher rather than from the driver, which has mesed_build imported.
_LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(f"@@usage {os.waitstatus_to_exitcode(status)} {time.perf_counter() - start} "
      f"{usage.ru_utime + usage.ru_stime} {usage.ru_maxrss}", file=sys.stderr)
"""


def _measured(cmd: list[str]) -> tuple[float, float, int, subprocess.CompletedProcess]:
    """Run a command: its wall seconds, CPU seconds (user + system, its waited-for children included),
    peak RSS in KiB (the largest of its processes) and the completed process."""
    launched = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, *cmd], capture_output=True, text=True)
    stderr, _, usage = launched.stderr.rpartition("@@usage ")
    if not usage:
        raise SystemExit(f"{' '.join(cmd)} could not be measured:\n{launched.stderr[-3000:]}")
    returncode, wall, cpu, maxrss = usage.split()
    done = subprocess.CompletedProcess(cmd, int(returncode), launched.stdout, stderr)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return float(wall), float(cpu), int(maxrss), done


def _run_ours(dump: str, wanted_file: str | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--dump", dump, "--wanted-file", wanted_file or ""]
    wall, cpu, maxrss, done = _measured(cmd)
    result = json.loads(done.stdout)
    result.update(wall_s=wall, cpu_s=cpu, maxrss_kib=maxrss)
    return result


_WX_FINISHED = re.compile(r"Finished 1-process extraction of (\d+) articles in ([\d.]+)s")


def _run_wikiextractor(dump: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "wikiextractor.WikiExtractor", "--links", "--processes", "1", "-o", out, dump]
        wall, cpu, maxrss, done = _measured(cmd)
        docs = chars = 0
        for path in Path(out).rglob("wiki_*"):
            text = path.read_text(encoding="utf-8")
            docs += text.count("<doc ")
            chars += len(text)
    finished = _WX_FINISHED.search(done.stderr)
    return {
        "articles": docs,
        "output_chars": chars,
        "wall_s": wall,
        "cpu_s": cpu,
        "maxrss_kib": maxrss,
        # its own log line times the extraction only (no interpreter start, imports or template pre-pass)
        "self_reported_s": float(finished.group(2)) if finished else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dump", help="pages-articles .xml.bz2 (default: gensim's enwiki excerpt)")
    parser.add_argument("--list-page", default="List of anthropologists", help="list page whose links are wanted")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best is kept")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for extract_sentences.{json,md}")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--wanted-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dump = args.dump or default_dump()

    if args.worker:
        print(json.dumps(_worker(args.dump, args.wanted_file)))
        return

    workdir = tempfile.TemporaryDirectory()
    wanted_file = Path(workdir.name) / "wanted.json"
    wanted_file.write_text(json.dumps(wanted_targets(args.dump, args.list_page)), encoding="utf-8")

    load_before = os.getloadavg()
    full_runs, fast_runs, wx_runs = [], [], []
    for i in range(args.repeat):
        # interleaved, so that load from other processes on the machine hits all three alike
        full_runs.append(_run_ours(args.dump, None))
        wx_runs.append(_run_wikiextractor(args.dump))
        fast_runs.append(_run_ours(args.dump, str(wanted_file)))
        print(f"run {i + 1}/{args.repeat}: ours {full_runs[-1]['wall_s']:.2f}s, fast path "
              f"{fast_runs[-1]['wall_s']:.2f}s, wikiextractor {wx_runs[-1]['wall_s']:.2f}s", file=sys.stderr)
    load_after = os.getloadavg()
    workdir.cleanup()

    articles = full_runs[0]["counts"]["articles"]
    wx_articles = wx_runs[0]["articles"]
    if wx_articles != articles:
        print(f"note: wikiextractor wrote {wx_articles} articles, we read {articles}", file=sys.stderr)

    def best(runs: list[dict]) -> dict:
        """Best-of-N: the fastest wall and CPU times (each its own minimum) and the largest peak RSS."""
        return {
            "wall_s": min(r["wall_s"] for r in runs),
            "cpu_s": min(r["cpu_s"] for r in runs),
            "peak_rss_mib": max(r["maxrss_kib"] for r in runs) / 1024,
        }

    def speeds(runs: list[dict]) -> dict:
        b = best(runs)
        c = runs[0]["counts"]
        fastest = min(runs, key=lambda r: r["cpu_s"])
        return {
            **b,
            "articles_per_s_cpu": c["articles"] / b["cpu_s"],
            "articles_per_s_wall": c["articles"] / b["wall_s"],
            "sentences_per_s_cpu": c["sentences"] / b["cpu_s"],
            "sentences_per_s_wall": c["sentences"] / b["wall_s"],
            # extraction alone, without interpreter start and imports: dump reading + article_paragraphs
            "articles_per_s_extraction_only_cpu": c["articles"] / (fastest["read_s"] + fastest["extract_s"]),
            "phases_cpu_s": {k: fastest[k] for k in ("imports_s", "read_s", "extract_s", "split_s")},
            "counts": c,
            "drops": runs[0]["drops"],
            "wanted_targets": runs[0]["wanted_targets"],
        }

    ours_full, ours_fast = speeds(full_runs), speeds(fast_runs)
    wx = best(wx_runs)
    wx.update(
        articles=wx_articles,
        articles_per_s_cpu=wx_articles / wx["cpu_s"],
        articles_per_s_wall=wx_articles / wx["wall_s"],
    )
    self_reported = [r["self_reported_s"] for r in wx_runs if r["self_reported_s"]]
    wx["articles_per_s_self_reported"] = wx_articles / min(self_reported) if self_reported else None

    result = {
        "benchmark": "extract_sentences",
        "machine": MACHINE,
        "measured_on": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "versions": {
            name: importlib.metadata.version(name)
            for name in ("mesed-build", "syntok", "wikiextractor")
        },
        "dump": {"path": args.dump, "name": Path(args.dump).name, "size_bytes": Path(args.dump).stat().st_size},
        "repeat": args.repeat,
        "timing": (
            "best of `repeat` interleaved runs, each in a fresh process (interpreter start, imports and dump "
            "reading included); CPU = user + system seconds of the process and its children, wall = elapsed"
        ),
        "ours_full": ours_full,
        "ours_wanted_fast_path": {**ours_fast, "list_page": args.list_page},
        "wikiextractor": wx,
        "ratio_to_wikiextractor": {
            "full_cpu": ours_full["articles_per_s_cpu"] / wx["articles_per_s_cpu"],
            "full_wall": ours_full["articles_per_s_wall"] / wx["articles_per_s_wall"],
            "wanted_fast_path_cpu": ours_fast["articles_per_s_cpu"] / wx["articles_per_s_cpu"],
            "wanted_fast_path_wall": ours_fast["articles_per_s_wall"] / wx["articles_per_s_wall"],
            # our dump reading + article_paragraphs (no interpreter start) against wikiextractor's whole run
            "extraction_only_cpu": ours_full["articles_per_s_extraction_only_cpu"] / wx["articles_per_s_cpu"],
        },
        "all_runs": {"ours_full": full_runs, "ours_wanted_fast_path": fast_runs, "wikiextractor": wx_runs},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "extract_sentences.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out / "extract_sentences.md").write_text(_markdown(result), encoding="utf-8")
    print(_markdown(result))


def _markdown(r: dict) -> str:
    full, fast, wx, ratio = r["ours_full"], r["ours_wanted_fast_path"], r["wikiextractor"], r["ratio_to_wikiextractor"]
    fc, pc = full["counts"], fast["counts"]
    load = r["measured_on"]["load_average_before"]
    phases = full["phases_cpu_s"]

    def row(name: str, run: dict, cpu_ratio: float, wall_ratio: float, sentences: bool = True) -> str:
        per_s = f"{run['sentences_per_s_cpu']:.0f} / {run['sentences_per_s_wall']:.0f}" if sentences else "–"
        return (
            f"| {name} | {run['articles_per_s_cpu']:.1f} / {run['articles_per_s_wall']:.1f} | {per_s} "
            f"| {run['peak_rss_mib']:.0f} | {cpu_ratio:.2f} / {wall_ratio:.2f} |"
        )

    lines = [
        "# Benchmark: wikitext -> sentences with exact mention spans",
        "",
        f"Machine: {r['machine']}, shared with other jobs (load average {load[0]:.1f} at the start, so wall "
        f"times are inflated; CPU times are the steadier measure). Dump: `{r['dump']['name']}` "
        f"({r['dump']['size_bytes']:,} bytes, {fc['articles']} articles). Best of {r['repeat']} interleaved "
        "runs, each in a fresh process (interpreter start, imports and dump reading included). "
        f"syntok {r['versions']['syntok']}, wikiextractor {r['versions']['wikiextractor']}. "
        "Command: `python bench/extract_sentences.py`.",
        "",
        "| run | articles/s (CPU / wall) | sentences/s (CPU / wall) | peak RSS, MiB (largest process) "
        "| ratio to wikiextractor (CPU / wall) |",
        "| --- | ---: | ---: | ---: | ---: |",
        row(
            f"ours, all articles (wanted=None): {fc['paragraphs']:,} paragraphs, {fc['sentences']:,} sentences, "
            f"{fc['mentions']:,} mentions", full, ratio["full_cpu"], ratio["full_wall"],
        ),
        row(
            f"ours, fast path (wanted = the {fast['wanted_targets']} link targets of *{fast['list_page']}*): "
            f"{pc['articles_with_paragraphs']} articles hit, {pc['sentences']:,} sentences, "
            f"{pc['mentions']:,} mentions", fast, ratio["wanted_fast_path_cpu"], ratio["wanted_fast_path_wall"],
        ),
        row(
            f"wikiextractor `--links --processes 1` (plain text only: no link spans, no sentences), "
            f"{wx['articles']} articles", wx, 1.0, 1.0, sentences=False,
        ),
        "",
        f"Where our full run spends its CPU time: imports {phases['imports_s']:.2f} s, dump reading "
        f"{phases['read_s']:.2f} s, extraction (article_paragraphs) {phases['extract_s']:.2f} s, segmentation "
        f"and tokenization (split_paragraph, syntok) {phases['split_s']:.2f} s. Text extraction alone (dump "
        f"reading + article_paragraphs) runs at {full['articles_per_s_extraction_only_cpu']:.1f} articles/s of CPU "
        f"time, {ratio['extraction_only_cpu']:.2f}x wikiextractor's whole run (which includes its interpreter start)",
    ]
    if wx["articles_per_s_self_reported"]:
        lines[-1] += (
            f"; wikiextractor's log times its own extraction at {wx['articles_per_s_self_reported']:.1f} "
            "articles/s of wall time."
        )
    else:
        lines[-1] += "."
    drops = ", ".join(f"{k} {v}" for k, v in sorted(full["drops"].items())) or "none"
    lines += ["", f"Drops counted in the full run: {drops}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
