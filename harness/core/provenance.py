"""What a reviewer needs to re-run a number: versions, code, hardware, seeds."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from harness import __version__

PACKAGES = ("torch", "transformers", "tokenizers", "datasets", "huggingface-hub", "captum",
            "lime", "shap", "numpy", "scipy", "scikit-learn", "pydantic", "attriboard")
REPO_ROOT = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


@lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return sha or None, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return None, None


@lru_cache(maxsize=1)
def hardware() -> dict:
    import psutil
    import torch

    info = {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def provenance(seeds: dict[str, int]) -> dict:
    sha, dirty = git_state()
    return {
        "harness_version": __version__,
        "git_sha": sha,
        "git_dirty": dirty,
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hardware": hardware(),
        "seeds": seeds,
        "created_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }


MAX_HASH_BYTES = 64 * 2**20
"""Most bytes :func:`hash_tree` reads from one tree (a submission folder is code, not data)."""
MAX_HASH_FILES = 10_000


class TreeError(ValueError):
    """A folder that cannot be hashed safely: a link out of it, a special file, too many bytes."""


def _within(p: Path, root: Path) -> bool:
    return p == root or root in p.parents


def walk_tree(root: Path) -> tuple[list[Path], list[Path]]:
    """Regular files and symbolic links under ``root``, never following a link; refuses links
    whose target lies outside ``root``."""
    files: list[Path] = []
    links: list[Path] = []
    real_root = root.resolve()
    stack = [root]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            p = Path(e.path)
            rel = p.relative_to(root)
            if "__pycache__" in rel.parts or p.suffix == ".pyc":
                continue
            if e.is_symlink():
                try:
                    target = p.resolve()  # the whole chain (strict=False: a dangling one too)
                except (OSError, RuntimeError) as err:  # a link loop
                    raise TreeError(f"{p}: symbolic link that cannot be resolved: {err}") from None
                if not _within(target, real_root):
                    raise TreeError(f"{p}: symbolic link to {os.readlink(p)!r} points outside {root}; "
                                    "a submission folder must hold its files itself")
                links.append(p)
            elif e.is_dir(follow_symlinks=False):
                stack.append(p)
            elif e.is_file(follow_symlinks=False):
                files.append(p)
            # sockets, FIFOs, devices: not content, never opened
            if len(files) + len(links) > MAX_HASH_FILES:
                raise TreeError(f"{root}: more than {MAX_HASH_FILES} files")
    return files, links


def hash_tree(path: Path, max_bytes: int | None = None) -> str:
    """Content hash of a file or folder (file names and bytes, ignoring caches).

    Never reads through a symbolic link: a link inside the folder is hashed as its name and
    target text; a link pointing outside it, or more than ``max_bytes`` of file content,
    raises :class:`TreeError` (default: :data:`MAX_HASH_BYTES`)."""
    path = Path(path)
    max_bytes = MAX_HASH_BYTES if max_bytes is None else max_bytes
    if path.is_symlink() and path.is_file():
        raise TreeError(f"{path}: is a symbolic link; hash the file itself")
    if path.is_file():
        base, files, links = path.parent, [path], []
    elif path.is_dir():
        base = path
        files, links = walk_tree(path)
    else:
        raise TreeError(f"{path}: not a regular file or folder")
    h = hashlib.sha256()
    total = 0
    entries = sorted([(f, False) for f in files] + [(l, True) for l in links])
    for f, is_link in entries:
        h.update(str(f.relative_to(base)).encode())
        if is_link:
            h.update(b"\0symlink\0" + os.readlink(f).encode("utf-8", "surrogateescape"))
            continue
        remaining = max_bytes - total
        with open(f, "rb", opener=lambda p, fl: os.open(p, fl | getattr(os, "O_NOFOLLOW", 0))) as fh:
            data = fh.read(remaining + 1)
        total += len(data)
        if total > max_bytes:
            raise TreeError(f"{path}: more than {max_bytes} bytes ({max_bytes / 2**20:.1f} MB) of files to hash "
                            f"(limit reached at {f}); "
                            "a submission folder holds code, not data or weights")
        h.update(data)
    return h.hexdigest()[:16]
