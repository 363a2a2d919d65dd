"""The downloader against a loopback server: real photos are stored, every bad input is refused
with its reason, and nothing crashes."""

from __future__ import annotations

from collections import Counter

import pytest
from PIL import Image

from mesed_build.images.content_store import ContentStore
from mesed_build.http import parse_retry_after
from mesed_build.images.downloader import Downloader, DownloaderConfig, count_rejections
from tests.images.conftest import PHOTOS

UA = "mesed-build-tests/0.1 (https://example.org/mesed-build; tests@example.org)"


def make(tmp_path, **overrides) -> tuple[Downloader, list[float]]:
    waits: list[float] = []
    options = dict(user_agent=UA, allow_private_hosts=["127.0.0.1"], max_bytes=600_000, longest_side=256,
                   read_timeout_s=0.5, total_timeout_s=3.0, max_retries=2, backoff_s=0.01, workers=4)
    options.update(overrides)
    return Downloader(DownloaderConfig(**options), ContentStore(tmp_path / "images"), sleep=waits.append), waits


def test_real_photos_are_resized_reencoded_and_stored_once(photo_server, tmp_path):
    downloader, _ = make(tmp_path)
    names = sorted(p.name for p in PHOTOS.glob("*.jpg") if p.stat().st_size <= 600_000)
    urls = [f"{photo_server.base}/photo/{n}" for n in names]
    urls.append(f"{photo_server.base}/photo/dog.jpg?again=1")  # the same image through another URL
    results = downloader.fetch_many(urls, progress=False)
    assert [r.status for r in results] == ["ok"] * len(urls)
    for name, result in zip(names, results):
        original = Image.open(PHOTOS / name)
        stored = Image.open(downloader.store.path(result.sha256))
        assert stored.format == "JPEG" and stored.mode == "RGB"
        assert max(stored.size) == 256
        # the aspect ratio is kept (to rounding)
        assert abs(stored.width / stored.height - original.width / original.height) < 0.02
        assert (result.width, result.height) == stored.size
    assert results[-1].sha256 == results[names.index("dog.jpg")].sha256
    assert len(list((tmp_path / "images").rglob("*.jpg"))) == len(names)
    assert set(photo_server.user_agents) == {UA}


def test_exif_orientation_is_applied(photo_server, tmp_path):
    downloader, _ = make(tmp_path)
    result = downloader.fetch(f"{photo_server.base}/rotated.jpg")
    assert result.ok
    # dog.jpg is 768x576; orientation 6 means it is shown rotated by 90 degrees
    assert (result.width, result.height) == (192, 256)


BAD = {
    "/truncated.jpg": "corrupt_image",
    "/empty.jpg": "empty_body",
    "/html.jpg": "not_raster_html",
    "/image.svg": "not_raster_svg",
    "/bomb.png": "decompression_bomb",
    "/big-declared.jpg": "too_large",
    "/big-undeclared.jpg": "too_large",
    "/length-lies-short.jpg": "corrupt_image",
    "/length-lies-long.jpg": "truncated_body",
    "/stall.jpg": "timeout",
    "/redirect/private": "ssrf_blocked",
    "/redirect/metadata": "ssrf_blocked",
    "/noai.jpg": "robots_noai",
    "/noimageai.jpg": "robots_noai",
    "/missing.jpg": "http_404",
}


def test_every_bad_input_is_refused_with_its_reason(photo_server, tmp_path):
    downloader, _ = make(tmp_path, max_retries=0)
    paths = list(BAD)
    results = downloader.fetch_many([photo_server.base + p for p in paths], progress=False)
    got = {p: r.status for p, r in zip(paths, results)}
    assert got == BAD
    assert count_rejections(results) == Counter(BAD.values())
    assert not list((tmp_path / "images").rglob("*.jpg"))  # nothing bad was stored
    # the redirect to the private address was never followed: the guard stopped it before connecting
    assert "10.0.0.1" in results[paths.index("/redirect/private")].detail
    assert "169.254.169.254" in results[paths.index("/redirect/metadata")].detail


def test_redirect_to_an_allowed_host_is_followed(photo_server, tmp_path):
    downloader, _ = make(tmp_path)
    result = downloader.fetch(f"{photo_server.base}/redirect/local")
    assert result.ok and result.final_url == f"{photo_server.base}/photo/dog.jpg"


def test_loopback_is_refused_without_the_allow_list(photo_server, tmp_path):
    downloader, _ = make(tmp_path, allow_private_hosts=[])
    before = dict(photo_server.hits)
    result = downloader.fetch(f"{photo_server.base}/photo/dog.jpg")
    assert result.status == "ssrf_blocked" and "loopback" in result.detail
    assert photo_server.hits == before  # no request reached the server


def test_connect_time_check_catches_an_address_the_name_check_missed(photo_server, tmp_path, monkeypatch):
    # DNS rebinding: the name looked public when checked, the socket lands on loopback
    downloader, _ = make(tmp_path, allow_private_hosts=[])
    monkeypatch.setattr(downloader.guard, "check_url", lambda url: None)
    result = downloader.fetch(f"{photo_server.base}/photo/eagle.jpg")
    assert result.status == "ssrf_blocked" and "127.0.0.1" in result.detail


def test_429_is_retried_after_retry_after(photo_server, tmp_path):
    downloader, waits = make(tmp_path)
    result = downloader.fetch(f"{photo_server.base}/ratelimited-once.jpg")
    assert result.ok
    assert waits == [7.0]  # Retry-After beats the 0.01 s backoff


def test_persistent_429_gives_up_with_a_reason(photo_server, tmp_path):
    downloader, waits = make(tmp_path, max_retries=2)
    result = downloader.fetch(f"{photo_server.base}/always-429.jpg")
    assert result.status == "rate_limited"
    assert len(waits) == 2 and all(w >= 1.0 for w in waits)


def test_retry_after_longer_than_the_cap_gives_up_at_once(photo_server, tmp_path):
    downloader, waits = make(tmp_path, max_retry_after_s=0.5)
    result = downloader.fetch(f"{photo_server.base}/always-429.jpg")
    assert result.status == "rate_limited" and waits == []


def test_per_host_limit_holds(photo_server, tmp_path):
    downloader, _ = make(tmp_path, workers=8, host_limits={"127.0.0.1": 2})
    photo_server.max_active = 0
    urls = [f"{photo_server.base}/photo/eagle.jpg?slow={i}" for i in range(8)]
    results = downloader.fetch_many(urls, progress=False)
    assert all(r.ok for r in results)
    assert photo_server.max_active == 2


def test_user_agent_without_contact_is_refused():
    with pytest.raises(ValueError, match="contact"):
        DownloaderConfig(user_agent="python-requests")


def test_retry_after_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("soon") is None


def test_file_urls_only_inside_the_pool(tmp_path):
    downloader, _ = make(tmp_path, local_roots=[PHOTOS])
    assert downloader.fetch((PHOTOS / "dog.jpg").as_uri()).ok
    outside = tmp_path / "x.jpg"
    outside.write_bytes((PHOTOS / "dog.jpg").read_bytes())
    assert downloader.fetch(outside.as_uri()).status == "bad_url"
