"""What the torchvision-format sources (CIFAR-10/100, SVHN) share: a ROOT on disk, and torchvision's
own downloader for users who are online (``download=True``). Nothing is downloaded otherwise."""

from __future__ import annotations

import tarfile
from pathlib import Path

from unlearnkit.errors import UnlearnkitError


def torchvision_download(pretty: str, cls_name: str, root: Path, layout: str, **kwargs) -> None:
    """Let `torchvision.datasets.<cls_name>(root, download=True, **kwargs)` fetch (and md5-check) the files."""
    import torchvision.datasets  # lazy: torchvision is a heavy import and only a download needs it

    try:
        getattr(torchvision.datasets, cls_name)(str(root), download=True, **kwargs)
    except (RuntimeError, OSError, tarfile.TarError, EOFError, ValueError) as exc:  # URLError is an OSError
        raise UnlearnkitError(
            f"could not download {pretty} into {root} ({type(exc).__name__}: {exc}): check the internet connection, "
            f"or download it by hand and point the source at the folder that contains {layout}"
        ) from exc


def missing_files(base: Path, files: list[str]) -> list[str]:
    return [f for f in files if not (base / f).is_file()]


def missing_error(pretty: str, base: Path, missing: list[str], layout: str) -> UnlearnkitError:
    return UnlearnkitError(
        f"{pretty} file {base / missing[0]} is missing ({len(missing)} of the expected files): pass download=True "
        f"(needs internet) or point the source at the folder that contains {layout}"
    )
