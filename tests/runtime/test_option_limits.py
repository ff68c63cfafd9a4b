"""keep_alive and option values that became Python errors or silent wrap-arounds (issue 13).

A keep_alive of 3e11 s made /api/ps answer 500 "year 11533 is out of range" until the
model unloaded; `num_batch` 2^40 wrapped to 0 in llama.cpp's 32-bit field; `num_thread`
600 was taken as is (15x slower than one thread per CPU).
"""

from __future__ import annotations

import datetime as dt
import os

import httpx

from runtime.durations import FOREVER, MAX_SECONDS, expiry, keep_alive_from_env, keep_alive_seconds
from runtime.load_plan import usable_batch, usable_threads


def test_keep_alive_past_go_duration_range_is_forever() -> None:
    # Go's time.Duration ends at 2^63-1 ns (~292 years), where the reference's "forever" is
    assert MAX_SECONDS == (2**63 - 1) / 1e9
    assert keep_alive_seconds(3e11) == FOREVER
    assert keep_alive_seconds(MAX_SECONDS - 1) == MAX_SECONDS - 1
    assert keep_alive_seconds("2562047h47m16.854775807s") == FOREVER
    assert keep_alive_from_env("99999999999999") == FOREVER
    now = 1_700_000_000.0
    assert expiry(now, FOREVER) == expiry(now, 3e11) == now + MAX_SECONDS
    assert dt.datetime.fromtimestamp(expiry(now, FOREVER)).year == 2316


def test_batch_and_threads_are_clamped() -> None:
    assert usable_batch(2**40, 2048) == 2048
    assert usable_batch(0, 2048) == 1
    assert usable_batch(512, 2048) == 512
    assert usable_threads(600) == (os.cpu_count() or 1)
    assert usable_threads(1) == 1
    assert usable_threads(-1) == 0  # the default


def test_ps_after_a_huge_keep_alive(server: str) -> None:
    body = {"model": "demo", "prompt": "Hi", "stream": False, "keep_alive": 3e11,
            "options": {"num_predict": 1}}  # fmt: skip
    assert httpx.post(server + "/api/generate", json=body, timeout=600).status_code == 200
    response = httpx.get(server + "/api/ps", timeout=60)
    assert response.status_code == 200, response.text
    (model,) = response.json()["models"]
    year = int(model["expires_at"][:4])
    assert 2300 < year < 2400  # now + 292 years, the reference's "forever"


def test_huge_batch_and_thread_options_still_generate(server: str) -> None:
    body = {"model": "demo", "prompt": "Hi", "stream": False,
            "options": {"num_predict": 2, "num_batch": 2**40, "num_thread": 600}}  # fmt: skip
    response = httpx.post(server + "/api/generate", json=body, timeout=600)
    assert response.status_code == 200, response.text
    assert response.json()["done"]
