"""The Hugging Face Hub in one place: cached? offline? reachable? download, and availability.

Every loader asks here: the CLIP loader (pez.models.clip) before open_clip would download, the
generator loader (pez.generate.pipeline) before diffusers would, and `pair_availability`
(pez.models.registry) at the app's start-up. Nothing here downloads unless asked to
(`ensure_cached`), and a machine without network gets a clear WeightsNotFoundError at once
instead of a minute of retries.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import WeightsNotFoundError

HOW_TO_PROVIDE = (
    "Run once with network access so the weights are cached, point HF_HOME at a folder that holds "
    "them, or pass local folders/files (see README, 'Models')."
)


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set: nothing may be downloaded."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "TRUE", "ON", "YES")
    return bool(constants.HF_HUB_OFFLINE) or env


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub's host accepts a connection (a quick probe, so that a machine
    without network gets a clear error at once instead of a minute of download retries)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def can_download(timeout: float = 3.0) -> bool:
    """Downloads are allowed (HF_HUB_OFFLINE unset) and the hub answers."""
    return not hub_offline() and hub_reachable(timeout)


def hub_cached(repo: str, *names: str) -> bool:
    """Whether any of the files `names` of hub repo `repo` is in the local hub cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)
    except Exception:  # noqa: BLE001 - a malformed repo id is simply "not cached"
        return False


def hub_cache_dir() -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return str(HF_HUB_CACHE)


def open_clip_files(arch: str, tag: str) -> tuple[str, list[str]]:
    """(hub repo id, candidate filenames) open_clip would download for the CLIP ARCH/TAG."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    repo, filename = os.path.split(cfg.get("hf_hub", ""))  # "org/repo/" -> default filename
    filename = filename or "open_clip_pytorch_model.bin"
    names = [filename]
    if filename.endswith((".bin", ".pth")):  # open_clip tries the .safetensors file first
        default = filename == "open_clip_pytorch_model.bin"
        names.insert(0, "open_clip_model.safetensors" if default else filename[:-4] + ".safetensors")
    return repo, names


def ensure_cached(repo: str, names: Sequence[str], what: str, missing: Callable[[str], str]) -> str | None:
    """Make one of `names` of hub repo `repo` available: cached already (None), or downloaded now
    (its path). `what` names the weights in messages; `missing(reason)` is the message when they
    can be neither found nor downloaded. Raises WeightsNotFoundError (one clear line)."""
    if hub_cached(repo, *names):
        return None
    if hub_offline():
        raise WeightsNotFoundError(missing("HF_HUB_OFFLINE is set and the files are not cached"))
    if not hub_reachable():
        raise WeightsNotFoundError(missing("the files are not cached and the Hugging Face Hub is unreachable"))
    return download_first(repo, names, what, missing)


def download_first(repo: str, names: Sequence[str], what: str, missing: Callable[[str], str]) -> str:
    """Download the first of `names` the repo has, with huggingface_hub's progress bar (which
    resumes within the run after transient errors). A failure is one WeightsNotFoundError line."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for name in names:
        try:
            return hf_hub_download(repo, name)
        except EntryNotFoundError:
            continue  # e.g. no .safetensors: open_clip's fallback name is next
        except Exception as e:  # noqa: BLE001 - network, disk, gated repo...: one clear line
            reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise WeightsNotFoundError(
                f"Could not download {what}: {name} of the Hugging Face repo {repo!r} failed ({reason}). "
                f"Run the same command again to retry; files already complete in the hub cache "
                f"({hub_cache_dir()}) are kept."
            ) from e
    raise WeightsNotFoundError(missing(f"the Hugging Face repo {repo!r} has none of these files"))


@dataclass(frozen=True)
class Availability:
    """Whether a pair's weights can be used now: cached locally, or downloadable on first use."""

    pair: str
    ok: bool  # usable now (everything cached, or the hub is reachable to download the rest)
    cached: bool  # every repo the pair needs is in the local hub cache
    missing: tuple[str, ...] = ()  # hub repos (or files) not in the local cache
    reason: str = ""  # why not usable, when not ok
    how_to: str = ""  # how to make it usable, when not ok


def availability(name: str, wanted: Sequence[tuple[str, Sequence[str]]], timeout: float = 3.0) -> Availability:
    """Availability of `name`, which needs one of the files of each (repo, files) in `wanted`."""
    missing = tuple(repo for repo, names in wanted if repo and not hub_cached(repo, *names))
    if not missing:
        return Availability(name, ok=True, cached=True)
    where = f"{', '.join(missing)} not in the hub cache ({hub_cache_dir()})"
    if hub_offline():
        return Availability(name, False, False, missing, f"HF_HUB_OFFLINE is set and {where}", HOW_TO_PROVIDE)
    if not hub_reachable(timeout):
        return Availability(
            name, False, False, missing, f"{where} and the Hugging Face Hub is unreachable", HOW_TO_PROVIDE
        )
    return Availability(name, ok=True, cached=False, missing=missing)


__all__ = [
    "Availability",
    "availability",
    "can_download",
    "download_first",
    "ensure_cached",
    "hub_cache_dir",
    "hub_cached",
    "hub_offline",
    "hub_reachable",
    "open_clip_files",
]
