"""`mfc cache`: the build cache's entries (intermediates such as a quantized model's F16),
and `mfc cache prune` to evict them by age or size."""

from __future__ import annotations

import json
import time

import click

from toolchain.cli.human import human_size, human_time, print_table
from toolchain.cli.reporting import print_json
from toolchain.cli.store_options import open_store, store_options
from toolchain.errors import UsageError
from toolchain.store.cache import CacheEntry, cache_size, max_size_from_env, parse_age, parse_size


def _entry_json(e: CacheEntry, state: str, now: float) -> dict[str, object]:
    return {
        "key": e.key,
        "pass": e.pass_name,
        "version": e.version,
        "input": e.input,
        "options": e.options,
        "digest": e.digest,
        "size": e.size,
        "last_used": e.used,
        "age_seconds": round(now - e.used, 3),
        "state": state,
    }


@click.group(invoke_without_command=True)
@store_options
@click.pass_context
def command(ctx: click.Context, models: str | None, as_json: bool) -> None:
    """List the build cache: one entry per heavy pass output (convert, quantize), with what
    it is keyed on (pass, version, input digest, options), its size, when it was last used
    and its state: `model` (a model uses the blob), `cache` (only the cache holds it),
    `orphan` (no model needs it; the next rm, prune or build removes it) or `missing`.
    """
    if ctx.invoked_subcommand is not None:
        return
    store = open_store(models)
    entries = store.cache.entries()
    refs = store.referenced_digests()
    states = store.cache.states(entries, refs)
    live = [e for e in entries if states[e.key] in ("model", "cache")]
    now = time.time()
    if as_json:
        print_json(
            {
                "entries": [_entry_json(e, states[e.key], now) for e in entries],
                "size": cache_size(live, refs),
                "max_size": max_size_from_env(),
            }
        )
        return
    table = [("KEY", "PASS", "INPUT", "OPTIONS", "SIZE", "LAST USED", "STATE")]
    for e in entries:
        options = ",".join(
            f"{k}={v if isinstance(v, str) else json.dumps(v)}"
            for k, v in sorted(e.options.items())
        )
        table.append(
            (
                e.key[:12],
                f"{e.pass_name or '?'} v{e.version}",
                e.input.removeprefix("sha256:")[:12] or "?",
                options,
                human_size(e.size),
                human_time(e.used, now),
                states[e.key],
            )
        )
    print_table(table)
    click.echo(
        f"cache holds {human_size(cache_size(live, refs))} of "
        f"{human_size(max_size_from_env())} (MFC_BUILD_CACHE_MAX_SIZE)"
    )


@command.command("prune")
@click.option("--older-than", metavar="AGE", help="Evict entries last used before AGE (7d, 12h).")
@click.option(
    "--max-size",
    metavar="SIZE",
    help="Evict least recently used entries down to SIZE (10G, 500M); 0 empties the cache.",
)
@store_options
def prune(older_than: str | None, max_size: str | None, models: str | None, as_json: bool) -> None:
    """Evict cache entries and the blobs only they hold (a model's blobs always stay).

    Orphan entries always go. With neither option, this is all it does. Holds the store's
    exclusive lock, so it waits for builds in progress.
    """
    try:
        age = parse_age(older_than) if older_than is not None else None
        size = parse_size(max_size) if max_size is not None else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    store = open_store(models)
    if not store.root.is_dir():
        evicted, swept, freed = 0, 0, 0
    else:
        done = store.evict_cache(
            older_than=age,
            max_size=size,
            on_wait=lambda: click.echo("waiting for another mfc process using the store", err=True),
        )
        evicted, swept, freed = len(done.evicted), len(done.swept), done.freed
    if as_json:
        print_json({"status": "success", "evicted": evicted, "orphans": swept, "freed": freed})
        return
    click.echo(
        f"evicted {evicted} cache entr{'y' if evicted == 1 else 'ies'}"
        + (f" and {swept} orphan blob(s)" if swept else "")
        + f", {human_size(freed)} freed"
    )
