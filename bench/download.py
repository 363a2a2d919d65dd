"""Benchmark: our image downloader against img2dataset, on the same loopback server, same resize.

A separate process serves the real test photos (tests/fixtures/images) with Python's http.server
on 127.0.0.1 under --urls distinct URLs (`/dog.jpg?n=17`). Both downloaders fetch every URL,
decode, shrink to a longest side of --side (keeping the ratio, never enlarging) and re-encode as
JPEG quality 90:
* ours: mesed_build.images.downloader.Downloader (threads in one process; SSRF guard with 127.0.0.1
  allowed, sniffing, bomb limit, EXIF orientation, content-addressed store that keeps one copy per content);
* peer: img2dataset (PyPI), resize_mode keep_ratio_largest, resize_only_if_bigger, files output,
  in its own processes; give it its best settings (--i2d-configs).
Reported: images/s (successful images / wall time of the download call) and ours/peer.

img2dataset pins pandas<3 and webdataset<0.3, which would downgrade this environment's, so it is
installed apart and only the peer's subprocess sees it:
    pip install --target /tmp/i2d img2dataset==1.47.0
    python bench/download.py --i2d-path /tmp/i2d      # writes bench/results/download.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PHOTOS = ROOT / "tests" / "fixtures" / "images"
MACHINE = "2-core x86_64 CPU, 24 GB, Python 3.11"
UA = "mesed-build-bench/0.1 (https://example.org/mesed-build; bench@example.org)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the photo server did not start")


def run_ours(urls: list[str], side: int, workers: int, out: Path) -> dict:
    from mesed_build.images.content_store import ContentStore
    from mesed_build.images.downloader import Downloader, DownloaderConfig

    config = DownloaderConfig(user_agent=UA, longest_side=side, jpeg_quality=90, workers=workers,
                              per_host_limit=workers, host_limits={}, allow_private_hosts=["127.0.0.1"],
                              max_retries=0, connect_timeout_s=10, read_timeout_s=10)
    downloader = Downloader(config, ContentStore(out))
    start = time.perf_counter()
    results = downloader.fetch_many(urls, progress=False)
    seconds = time.perf_counter() - start
    ok = sum(r.ok for r in results)
    return {"downloader": "ours", "workers": workers, "ok": ok, "failed": len(urls) - ok,
            "seconds": round(seconds, 3), "images_per_s": round(ok / seconds, 2)}


PEER = textwrap.dedent('''
    import json, sys, time
    from img2dataset import download
    url_list, out, side, processes, threads, per_shard = sys.argv[1:7]
    start = time.perf_counter()
    download(url_list=url_list, output_folder=out, input_format="txt", output_format="files",
             image_size=int(side), resize_mode="keep_ratio_largest", resize_only_if_bigger=True,
             encode_quality=90, encode_format="jpg", processes_count=int(processes),
             thread_count=int(threads), number_sample_per_shard=int(per_shard), timeout=10, retries=0,
             distributor="multiprocessing", enable_wandb=False, compute_hash=None, incremental_mode="incremental",
             user_agent_token="mesed-build-bench")
    seconds = time.perf_counter() - start
    ok = 0
    import glob
    for stats in glob.glob(out + "/*_stats.json"):
        ok += json.load(open(stats))["successes"]
    print(json.dumps({"seconds": seconds, "ok": ok}))
''')


def run_peer(urls_file: Path, n: int, side: int, processes: int, threads: int, per_shard: int, out: Path,
             i2d_path: str) -> dict:
    env = {**os.environ, "PYTHONPATH": i2d_path, "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-c", PEER, str(urls_file), str(out), str(side), str(processes),
                           str(threads), str(per_shard)], env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"img2dataset failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"downloader": "img2dataset", "processes": processes, "threads": threads, "per_shard": per_shard,
            "ok": result["ok"], "failed": n - result["ok"], "seconds": round(result["seconds"], 3),
            "images_per_s": round(result["ok"] / result["seconds"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urls", type=int, default=2400)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--workers", type=int, nargs="+", default=[32, 64], help="our thread counts to try")
    parser.add_argument("--i2d-configs", nargs="+", default=["2x32", "2x64"],
                        help="img2dataset PROCESSESxTHREADS to try (1,000 samples per shard)")
    parser.add_argument("--i2d-path", default="/tmp/i2d", help="folder img2dataset was pip-installed into (--target)")
    args = parser.parse_args()

    names = sorted(p.name for p in PHOTOS.glob("*.jpg"))
    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    try:
        serve = work / "serve"
        serve.mkdir()
        for name in names:
            shutil.copy(PHOTOS / name, serve / name)
        server, base = start_server(serve)
        try:
            urls = [f"{base}/{names[i % len(names)]}?n={i}" for i in range(args.urls)]
            urls_file = work / "urls.txt"
            urls_file.write_text("\n".join(urls) + "\n")
            rows = []
            load_before = os.getloadavg()[0]
            # alternate ours and the peer, so a change in the shared machine's load hits both alike
            runs = []
            for i in range(max(len(args.workers), len(args.i2d_configs))):
                if i < len(args.workers):
                    runs.append(("ours", args.workers[i]))
                if i < len(args.i2d_configs):
                    runs.append(("peer", args.i2d_configs[i]))
            for kind, setting in runs:
                if kind == "ours":
                    rows.append(run_ours(urls, args.side, setting, work / f"ours-{setting}"))
                else:
                    processes, threads = (int(x) for x in setting.split("x"))
                    rows.append(run_peer(urls_file, len(urls), args.side, processes, threads, 1000,
                                         work / f"i2d-{setting}", args.i2d_path))
                print(json.dumps(rows[-1]), flush=True)
        finally:
            server.kill()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    best_ours = max((r for r in rows if r["downloader"] == "ours"), key=lambda r: r["images_per_s"])
    best_peer = max((r for r in rows if r["downloader"] == "img2dataset"), key=lambda r: r["images_per_s"])
    ratio = round(best_ours["images_per_s"] / best_peer["images_per_s"], 3)
    from importlib.metadata import version

    result = {
        "benchmark": "download", "machine": MACHINE, "python": platform.python_version(),
        "urls": args.urls, "photos": names, "side": args.side,
        "img2dataset": _peer_version(args.i2d_path), "pillow": version("pillow"),
        "server": "python -m http.server (ThreadingHTTPServer, HTTP/1.0) in its own process on 127.0.0.1",
        "rows": rows, "best_ours": best_ours, "best_peer": best_peer, "ratio_ours_to_peer": ratio,
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "download.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Image download: ours vs img2dataset ({MACHINE})",
        "",
        f"{args.urls} URLs of the 6 real test photos served from a loopback http.server in its own process; "
        f"both shrink to a longest side of {args.side} and re-encode as JPEG quality 90. img2dataset "
        f"{result['img2dataset']}, Pillow {result['pillow']}. Runs alternate ours and img2dataset; the shared "
        f"machine's 1-minute load average was {result['load_average_1min']['before']} before and "
        f"{result['load_average_1min']['after']} after (2 CPUs).",
        "",
        "| downloader | settings | ok | failed | seconds | images/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        settings = (f"{r['workers']} threads" if r["downloader"] == "ours"
                    else f"{r['processes']} processes x {r['threads']} threads, {r['per_shard']}/shard")
        lines.append(f"| {r['downloader']} | {settings} | {r['ok']} | {r['failed']} | {r['seconds']:.2f} | "
                     f"{r['images_per_s']:.1f} |")
    lines += ["", f"Best ours / best img2dataset: **{ratio:.2f}x**."]
    (RESULTS / "download.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _peer_version(path: str) -> str | None:
    found = sorted(Path(path).glob("img2dataset-*.dist-info"))
    return found[-1].name[len("img2dataset-") : -len(".dist-info")] if found else None


if __name__ == "__main__":
    main()
