"""`mfc run MODEL [PROMPT]`: chat with a model through the running server.

With a prompt (or text on stdin) the answer is streamed and the command exits; without,
an interactive chat keeps the conversation's history until `/bye` (or Ctrl-D).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from toolchain.cli.reporting import print_json
from toolchain.cli.store_options import json_option
from toolchain.errors import MfcError

if TYPE_CHECKING:
    from runtime.client import Client

HELP = """Available commands:
  /clear          Clear the conversation
  /bye            Exit
  /?, /help       Show this help
Use \"\"\" to begin and end a multi-line message."""


def _stats(final: dict[str, Any]) -> str:
    def rate(count: int, ns: int) -> str:
        return f"{count / (ns / 1e9):.2f} tokens/s" if ns else "n/a"

    lines = [
        f"total duration:       {final.get('total_duration', 0) / 1e9:.6f}s",
        f"load duration:        {final.get('load_duration', 0) / 1e9:.6f}s",
        f"prompt eval count:    {final.get('prompt_eval_count', 0)} token(s)",
        f"prompt eval duration: {final.get('prompt_eval_duration', 0) / 1e9:.6f}s",
        "prompt eval rate:     "
        + rate(final.get("prompt_eval_count", 0), final.get("prompt_eval_duration", 0)),
        f"eval count:           {final.get('eval_count', 0)} token(s)",
        f"eval duration:        {final.get('eval_duration', 0) / 1e9:.6f}s",
        "eval rate:            " + rate(final.get("eval_count", 0), final.get("eval_duration", 0)),
    ]
    return "\n".join(lines)


def _chat(
    client: Client, request: dict[str, Any], messages: list[dict[str, Any]], verbose: bool
) -> str:
    """Stream one answer to stdout; returns its text (partial if interrupted)."""
    parts: list[str] = []
    final: dict[str, Any] = {}
    thinking = False
    try:
        for item in client.stream("/api/chat", {**request, "messages": messages}):
            message = item.get("message", {})
            if message.get("thinking"):
                if not thinking:
                    click.secho("Thinking...", dim=True)
                    thinking = True
                click.secho(message["thinking"], nl=False, dim=True)
            text = message.get("content", "")
            if text:
                if thinking:
                    click.secho("\n...done thinking.\n", dim=True)
                    thinking = False
                parts.append(text)
                click.echo(text, nl=False)
            if item.get("done"):
                final = item
    except KeyboardInterrupt:
        click.echo()
        return "".join(parts)
    click.echo("\n" if parts and not parts[-1].endswith("\n") else "")
    if verbose and final:
        click.echo(_stats(final), err=True)
    return "".join(parts)


def _read_message() -> str | None:
    """One user message from the terminal (None at end of input)."""
    try:
        line = input(">>> ")
    except EOFError:
        return None
    if not line.startswith('"""'):
        return line
    lines = [line[3:]]
    while not lines[-1].endswith('"""'):
        try:
            lines.append(input("... "))
        except EOFError:
            break
    text = "\n".join(lines)
    return text[:-3] if text.endswith('"""') else text


def _user(text: str, vision: bool) -> dict[str, Any]:
    """A user message, with the image files its text names attached (vision models)."""
    if not vision:
        return {"role": "user", "content": text}
    from toolchain.cli.attach import extract_images

    text, images = extract_images(text)
    return {"role": "user", "content": text, **({"images": images} if images else {})}


def _interactive(
    client: Client, request: dict[str, Any], verbose: bool, vision: bool = False
) -> None:
    history: list[dict[str, Any]] = []
    while True:
        try:
            line = _read_message()
        except KeyboardInterrupt:
            click.echo("\nUse Ctrl + d or /bye to exit.")
            continue
        if line is None or line.strip() in ("/bye", "/exit"):
            return
        if not line.strip():
            continue
        if line.strip() in ("/?", "/help"):
            click.echo(HELP)
            continue
        if line.strip() == "/clear":
            history = []
            click.echo("Cleared session context")
            continue
        if line.startswith("/"):
            click.echo(f"Unknown command '{line.split()[0]}'. Type /? for help")
            continue
        try:
            history.append(_user(line, vision))
        except MfcError as exc:
            click.echo(f"error: {exc.message}", err=True)
            continue
        answer = _chat(client, request, history, verbose)
        history.append({"role": "assistant", "content": answer})


@click.command()
@click.argument("model")
@click.argument("prompt", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["json"]), help="Answer in JSON.")
@click.option("--keepalive", metavar="DURATION", help="How long the model stays loaded (5m).")
@click.option("--think/--no-think", default=None, help="Ask a thinking model to think or not.")
@click.option("--verbose", is_flag=True, help="Print timings after each answer.")
@json_option
def command(
    model: str,
    prompt: tuple[str, ...],
    *,
    fmt: str | None,
    keepalive: str | None,
    think: bool | None,
    verbose: bool,
    as_json: bool,
) -> None:
    """Run MODEL: answer PROMPT, or chat interactively when no prompt is given."""
    from runtime.client import Client, ServerError

    client = Client()
    try:
        try:
            shown = client.request("POST", "/api/show", {"model": model})
        except ServerError as exc:
            if "not found" in exc.message:
                raise MfcError(
                    exc.message, hint="build it with `mfc build` or fetch it with `mfc pull`"
                ) from None
            raise
        request: dict[str, Any] = {"model": model, "stream": True}
        if fmt:
            request["format"] = fmt
        if keepalive:
            request["keep_alive"] = keepalive
        if think is not None:
            request["think"] = think
        text = " ".join(prompt)
        if not sys.stdin.isatty():
            piped = sys.stdin.read()
            text = f"{piped}\n{text}".strip() if text else piped.strip()
        vision = "vision" in (shown.get("capabilities") or [])
        if as_json:
            body = {**request, "stream": False, "messages": [_user(text, vision)]}
            print_json(client.request("POST", "/api/chat", body))
            return
        client.request("POST", "/api/chat", {**request, "stream": False, "messages": []})
        if text:
            _chat(client, request, [_user(text, vision)], verbose)
            return
        _interactive(client, request, verbose, vision)
    finally:
        client.close()
