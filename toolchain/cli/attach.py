"""Image files named in a `mfc run` prompt, attached as the reference's CLI does.

For a model with the `vision` capability, every path in the prompt that starts with `./`,
`../`, `/` or `~/` and ends in .png, .jpg, .jpeg or .webp (any case, optionally quoted, with
`\\ ` for spaces) is read, checked to be an image, sent base64-encoded in the message's
`images` and removed from the text.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import click

from toolchain.errors import MfcError

#: the reference CLI's limit on one attached file
MAX_FILE_BYTES = 100 * 1024 * 1024
_PATH = re.compile(r"(?:\.\.?/|/|~/)(?:[^\s\\]|\\ )+?\.(?i:png|jpe?g|webp)\b")
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


def _is_image(head: bytes) -> bool:
    return head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def extract_images(prompt: str) -> tuple[str, list[str]]:
    """The prompt without the image paths it names, and those images (base64)."""
    images: list[str] = []
    for match in _PATH.findall(prompt):
        path = Path(match.replace("\\ ", " ")).expanduser()
        if not path.is_file():
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            raise MfcError(f"file size exceeds maximum limit (100MB): {path}")
        data = path.read_bytes()
        if not _is_image(data[:16]):
            raise MfcError(f"invalid image type: {path}")
        images.append(base64.b64encode(data).decode("ascii"))
        for quoted in (f"'{match}'", f'"{match}"', match):
            prompt = prompt.replace(quoted, "")
        click.echo(f"Added image '{path}'", err=True)
    return prompt.strip(), images
