"""Images for vision models: checked and tagged as the reference does, run through libmtmd.

The API layer decodes each request image (base64), checks it is a PNG or JPEG within the
limits, and tags it into the conversation the way the reference's server does: every image
gets an id in request order, and its message content gets `[img-N]` in front (or in place of
an `[img]` the client wrote). After the template has rendered, the tags become libmtmd's
media marker and the engine evaluates text and image chunks with llama.cpp's own helper
(`mtmd_helper_eval_chunks`), in the request's own sequence.

The prompt cache stays correct across different images: an image's positions are keyed by
a negative pseudo-token derived from the image's digest, so a cached prefix never matches
past an image unless it is the same image (and requests with images are evaluated from the
start of their sequence anyway; a later text-only request reuses only the text before it).
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import functools
import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Any

import llama_cpp as lc
import llama_cpp.mtmd_cpp as mtmd

from runtime.errors import ApiError

#: images one request may carry (the reference has no count limit of its own; a vision
#: model's context fills long before this)
MAX_IMAGES = 16
#: bytes of one decoded image
MAX_IMAGE_BYTES = 20 * 1024 * 1024
#: pixels on either side of one image
MAX_IMAGE_SIDE = 8192
#: the reference's wording when an image is not one it can decode (Go's image package)
UNKNOWN_FORMAT = "failed to process inputs: image: unknown format"
TAG = re.compile(r"\[img-(\d+)\]")


@dataclass(frozen=True)
class Image:
    data: bytes
    digest: str


@dataclass(frozen=True)
class MediaPrompt:
    """A rendered prompt whose images sit at libmtmd markers, in order."""

    text: str
    images: tuple[Image, ...]
    projector: str
    add_special: bool = True


def decode_image(encoded: Any) -> Image:
    """One request image: base64 (as Go decodes []byte), a PNG or JPEG within the limits."""
    if not isinstance(encoded, str):
        raise ApiError(400, "invalid image input")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        at = _bad_base64_at(encoded)
        raise ApiError(400, f"illegal base64 data at input byte {at}") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ApiError(400, f"image too large: {len(data)} bytes (limit {MAX_IMAGE_BYTES})")
    width, height = image_size(data)
    if max(width, height) > MAX_IMAGE_SIDE or min(width, height) < 1:
        raise ApiError(
            400, f"image dimensions {width}x{height} out of range (1 to {MAX_IMAGE_SIDE} pixels)"
        )
    return Image(data, hashlib.sha256(data).hexdigest())


def _bad_base64_at(text: str) -> int:
    alphabet = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    for i, ch in enumerate(text.encode("utf-8", errors="replace")):
        if ch not in alphabet:
            return i
    return max(len(text) - len(text) % 4, 0)


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG or JPEG header; 400 for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:3] == b"\xff\xd8\xff":
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                break
            marker = data[pos + 1]
            length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
            # start-of-frame markers carry the size (not DHT C4, JPG C8, DAC CC)
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                if pos + 9 > len(data):
                    break
                height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
                return int(width), int(height)
            pos += 2 + length
    raise ApiError(400, UNKNOWN_FORMAT)


def tag_images(
    messages: list[dict[str, Any]], limit: int = MAX_IMAGES
) -> tuple[list[dict[str, Any]], list[Image]]:
    """Messages with `[img-N]` tags in their content, and the decoded images by id."""
    images: list[Image] = []
    out = []
    for m in messages:
        raw = m.get("images") or []
        if not raw:
            out.append(m)
            continue
        prefix = ""
        content = str(m.get("content") or "")
        for encoded in raw:
            if len(images) >= limit:
                raise ApiError(400, f"too many images: at most {limit} per request")
            tag = f"[img-{len(images)}]"
            images.append(decode_image(encoded))
            if "[img]" in content:
                content = content.replace("[img]", tag, 1)
            else:
                prefix += tag
        out.append({**m, "content": prefix + content})
    return out, images


def media_prompt(
    text: str, images: list[Image], projector: str, add_special: bool = True
) -> MediaPrompt:
    """The rendered `text` with its `[img-N]` tags as libmtmd markers, images in tag order
    (a tag naming no image stays text, as in the reference's runner)."""
    marker = str(mtmd.mtmd_default_marker().decode("utf-8"))
    placed: list[Image] = []

    def place(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if n >= len(images):
            return match.group(0)
        placed.append(images[n])
        return marker

    return MediaPrompt(TAG.sub(place, text), tuple(placed), projector, add_special)


#: the reference's estimate of one image's tokens when the projector's metadata gives none
DEFAULT_IMAGE_TOKENS = 768


@functools.lru_cache(maxsize=32)
def image_tokens(projector: str) -> int:
    """How many context positions one image costs when fitting a chat into `num_ctx`: the
    reference's estimate from the projector's image and patch sizes and projector type."""
    from toolchain.store.gguf_reader import read_gguf

    kv = read_gguf(projector).kv

    def uint(key: str, default: int = 0) -> int:
        value = kv.get(key, default)
        return value if isinstance(value, int) else default

    patch, size = uint("clip.vision.patch_size"), uint("clip.vision.image_size")
    if not patch or not size:
        return DEFAULT_IMAGE_TOKENS
    side = size // patch
    n = side * side
    kind = kv.get("clip.projector_type", "")
    if kind in ("ldp", "ldpv2", "adapter"):
        n //= 4
    elif kind in ("qwen2vl_merger", "qwen2.5vl_merger"):
        n = -((-size // (2 * patch)) ** 2)
    elif kind == "gemma3":
        n = (side // max(uint("clip.vision.projector.scale_factor", 4), 1)) ** 2
    elif kind in ("idefics3", "internvl"):
        scale = uint("clip.vision.projector.scale_factor", 1)
        n //= scale * scale if scale > 1 else 1
    elif kind == "pixtral":
        merged = side // max(uint("clip.vision.spatial_merge_size", 1), 1)
        n = merged * merged + merged - 1
    return n or DEFAULT_IMAGE_TOKENS


def _pseudo_token(digest: str) -> int:
    """A negative id no vocabulary token has, the same for the same image."""
    return -1 - (int(digest[:8], 16) & 0x3FFFFFFF)


class Projector:
    """A libmtmd context over a loaded text model (its `mmproj` GGUF)."""

    def __init__(self, path: str, model: Any, n_threads: int) -> None:
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.n_threads = max(n_threads, 1)
        params.warmup = False
        self.path = path
        self.ctx = mtmd.mtmd_init_from_file(path.encode("utf-8"), model, params)
        if not self.ctx:
            raise ApiError(500, f"unable to load projector: {path}")
        if not mtmd.mtmd_support_vision(self.ctx):
            self.close()
            raise ApiError(500, f"projector has no vision encoder: {path}")

    def close(self) -> None:
        if self.ctx:
            mtmd.mtmd_free(self.ctx)
            self.ctx = None

    def tokenize(self, prompt: MediaPrompt) -> Chunks:
        """Text and image chunks of `prompt`; 400 for an image libmtmd cannot decode."""
        bitmaps = []
        try:
            for image in prompt.images:
                buf = (ctypes.c_uint8 * len(image.data)).from_buffer_copy(image.data)
                bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self.ctx, buf, len(buf), False)
                if not bitmap:
                    raise ApiError(400, UNKNOWN_FORMAT)
                mtmd.mtmd_bitmap_set_id(bitmap, image.digest.encode("ascii"))
                bitmaps.append(bitmap)
            chunks = mtmd.mtmd_input_chunks_init()
            data = prompt.text.encode("utf-8")
            text = mtmd.mtmd_input_text(data, len(data), prompt.add_special, True)
            array = (mtmd.mtmd_bitmap_p_ctypes * max(len(bitmaps), 1))(*bitmaps)
            rc = mtmd.mtmd_tokenize(self.ctx, chunks, ctypes.byref(text), array, len(bitmaps))
            if rc != 0:
                mtmd.mtmd_input_chunks_free(chunks)
                message = "image preprocessing failed" if rc == 2 else "image count mismatch"
                raise ApiError(400, f"failed to process inputs: {message}")
            return Chunks(chunks, prompt.images)
        finally:
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)

    def evaluate(self, lctx: Any, chunks: Chunks, seq: int, n_batch: int) -> int:
        """Decode every chunk into sequence `seq` from position 0, logits for the last
        token only; returns the positions used."""
        new_n_past = lc.llama_pos(0)
        rc = mtmd.mtmd_helper_eval_chunks(
            self.ctx, lctx, chunks.ptr, 0, seq, n_batch, True, ctypes.byref(new_n_past)
        )
        if rc != 0:
            raise RuntimeError(f"mtmd_helper_eval_chunks returned {rc}")
        return int(new_n_past.value)


class Chunks:
    """libmtmd's tokenized prompt: its positions and the cache key of each position."""

    def __init__(self, ptr: Any, images: tuple[Image, ...]) -> None:
        self.ptr = ptr
        self.n_pos = int(mtmd.mtmd_helper_get_n_pos(ptr))
        #: KV cells the prompt takes (more than n_pos when images use M-RoPE positions)
        self.n_tokens = int(mtmd.mtmd_helper_get_n_tokens(ptr))
        self.key = self._key(images)

    def _key(self, images: tuple[Image, ...]) -> list[int]:
        key: list[int] = []
        image = 0
        for i in range(int(mtmd.mtmd_input_chunks_size(self.ptr))):
            chunk = mtmd.mtmd_input_chunks_get(self.ptr, i)
            if mtmd.mtmd_input_chunk_get_type(chunk) == 0:  # MTMD_INPUT_CHUNK_TYPE_TEXT
                n = ctypes.c_size_t(0)
                tokens = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                key.extend(int(tokens[j]) for j in range(n.value))
            else:
                digest = images[image].digest if image < len(images) else "0" * 8
                image += 1
                key.extend([_pseudo_token(digest)] * int(mtmd.mtmd_input_chunk_get_n_pos(chunk)))
        return key

    def close(self) -> None:
        if self.ptr:
            mtmd.mtmd_input_chunks_free(self.ptr)
            self.ptr = None
