"""Image bytes on disk, named by their sha256 (so the same image fetched twice is stored once)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class ContentStore:
    """`root/ab/abcdef....jpg`; writes are atomic (temp file + rename), so a kill leaves no half file."""

    def __init__(self, root: str | Path, suffix: str = ".jpg"):
        self.root = Path(root)
        self.suffix = suffix

    def relpath(self, sha256: str) -> str:
        return f"{sha256[:2]}/{sha256}{self.suffix}"

    def path(self, sha256: str) -> Path:
        return self.root / self.relpath(sha256)

    def __contains__(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store bytes; returns (sha256, newly_written)."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if target.exists():
            return sha, False
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha, True

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()
