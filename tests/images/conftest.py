"""A loopback HTTP server serving the real test photos and every kind of bad answer."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

PHOTOS = Path(__file__).resolve().parent.parent / "fixtures" / "images"


def bomb_png(width: int = 12_000, height: int = 12_000) -> bytes:
    """A real, valid greyscale PNG whose pixels (all zero) compress to a few hundred KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def rotated_jpeg() -> bytes:
    """dog.jpg (768x576, landscape) saved with EXIF Orientation 6: displayed as portrait."""
    image = Image.open(PHOTOS / "dog.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


class PhotoServer:
    def __init__(self):
        self.hits: dict[str, int] = {}
        self.user_agents: list[str] = []
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        dog = (PHOTOS / "dog.jpg").read_bytes()
        self.bodies = {
            "/truncated.jpg": dog[: len(dog) // 2],
            "/empty.jpg": b"",
            "/html.jpg": b"<!DOCTYPE html><html><head><title>Login</title></head><body>Please sign in</body></html>",
            "/image.svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
            "/bomb.png": bomb_png(),
            "/rotated.jpg": rotated_jpeg(),
        }

    def handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def send_body(self, body: bytes, *, ctype="image/jpeg", headers=None, length=None):
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if length != "omit":
                    self.send_header("Content-Length", str(len(body) if length is None else length))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                with server.lock:
                    server.hits[path] = server.hits.get(path, 0) + 1
                    server.user_agents.append(self.headers.get("User-Agent", ""))
                    hit = server.hits[path]
                try:
                    self.route(path, hit)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def route(self, path: str, hit: int):
                if path.startswith("/photo/"):
                    name = path.split("/")[2]
                    if "slow=" in self.path:
                        # concurrency is measured on the slow photo requests of the per-host limit test
                        # only, and over the wait alone: once the body is out the client may send its
                        # next request before this thread would get to count this one as done
                        with server.lock:
                            server.active += 1
                            server.max_active = max(server.max_active, server.active)
                        time.sleep(0.2)  # long enough for concurrent fetches to overlap
                        with server.lock:
                            server.active -= 1
                    self.send_body((PHOTOS / name).read_bytes())
                elif path in server.bodies:
                    ctype = "image/svg+xml" if path.endswith(".svg") else "image/jpeg"
                    self.send_body(server.bodies[path], ctype=ctype)
                elif path == "/big-declared.jpg":
                    self.send_body((PHOTOS / "kite.jpg").read_bytes())
                elif path == "/big-undeclared.jpg":
                    self.send_body((PHOTOS / "kite.jpg").read_bytes(), length="omit")
                elif path == "/length-lies-short.jpg":
                    # claims 2 KB, sends the whole photo: the client must only trust 2 KB
                    self.send_body((PHOTOS / "dog.jpg").read_bytes(), length=2048)
                    self.close_connection = True
                elif path == "/length-lies-long.jpg":
                    body = (PHOTOS / "dog.jpg").read_bytes()
                    self.send_body(body, length=len(body) + 50_000)
                    self.close_connection = True
                elif path == "/stall.jpg":
                    body = (PHOTOS / "dog.jpg").read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[:4096])
                    self.wfile.flush()
                    server.stop_event.wait(5)
                    self.close_connection = True
                elif path == "/noai.jpg":
                    self.send_body((PHOTOS / "dog.jpg").read_bytes(), headers={"X-Robots-Tag": "noindex, noai"})
                elif path == "/noimageai.jpg":
                    self.send_body((PHOTOS / "dog.jpg").read_bytes(), headers={"X-Robots-Tag": "googlebot: noimageai"})
                elif path.startswith("/redirect/"):
                    target = {"private": "http://10.0.0.1/secret.jpg",
                              "metadata": "http://169.254.169.254/latest/meta-data/",
                              "local": "/photo/dog.jpg"}[path.split("/")[2]]
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path == "/ratelimited-once.jpg":
                    if hit == 1:
                        self.send_response(429)
                        self.send_header("Retry-After", "7")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    else:
                        self.send_body((PHOTOS / "eagle.jpg").read_bytes())
                elif path == "/always-429.jpg":
                    self.send_response(429)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

        return Handler


@pytest.fixture(scope="module")
def photo_server():
    server = PhotoServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), server.handler())
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    server.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield server
    server.stop_event.set()
    httpd.shutdown()
    httpd.server_close()
