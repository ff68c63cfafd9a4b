"""The `mfc` command line.

Commands are loaded lazily from their own modules (`COMMANDS`), so `mfc --help` and
`mfc check` never import torch, llama_cpp or the server. Every command raises `MfcError`
for user errors; `main` prints them as diagnostics and exits 1 (2 for usage errors).
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from pathlib import Path

import click

from toolchain import OLLAMA_API_VERSION, __version__
from toolchain.diagnostics import Diagnostic, render
from toolchain.errors import MfcError, UsageError

#: command name -> "module:attribute" of a click.Command. One line per command.
COMMANDS: dict[str, str] = {
    "check": "toolchain.cli.check:command",
    "fmt": "toolchain.cli.fmt:command",
    "parse": "toolchain.cli.parse:command",
    "push": "toolchain.cli.push:command",
    "pull": "toolchain.cli.pull:command",
    "export": "toolchain.cli.export:command",
    "import": "toolchain.cli.import_:command",
    "build": "toolchain.cli.build:command",
    "create": "toolchain.cli.create:command",
    "list": "toolchain.cli.list:command",
    "show": "toolchain.cli.show:command",
    "cp": "toolchain.cli.cp:command",
    "rm": "toolchain.cli.rm:command",
    "prune": "toolchain.cli.prune:command",
    "cache": "toolchain.cli.cache:command",
    "inspect": "toolchain.cli.inspect:command",
    "serve": "toolchain.cli.serve:command",
    "run": "toolchain.cli.run:command",
    "ps": "toolchain.cli.ps:command",
    "stop": "toolchain.cli.stop:command",
    "template": "toolchain.cli.template:command",
    "quantize": "toolchain.cli.quantize:command",
    "eval": "toolchain.cli.eval:command",
    "imatrix": "toolchain.cli.imatrix:command",
    "convert": "toolchain.cli.convert:command",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__, prog_name="mfc", message=f"%(prog)s %(version)s (Ollama API {OLLAMA_API_VERSION})"
)
def cli() -> None:
    """mfc: a compiler for Modelfiles and quantized models, and a runtime that serves them."""


#: exit status after SIGTERM (128 + 15, what a shell reports for a terminated command);
#: Ctrl-C exits with 130 (128 + SIGINT)
EXIT_TERMINATED = 128 + signal.SIGTERM
EXIT_INTERRUPTED = 128 + signal.SIGINT


class Terminated(BaseException):
    """SIGTERM arrived. Raised in the main thread, it unwinds the command the way Ctrl-C's
    KeyboardInterrupt does: every `finally` runs, so worker processes are stopped and temp
    files removed, then `main` exits with `EXIT_TERMINATED`."""


def _on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends us at once
    raise Terminated


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turning user errors into diagnostics and exit codes.

    SIGTERM cleans up like Ctrl-C (exit 143 instead of 130); `mfc serve` replaces this
    handler with the server's own graceful shutdown while it runs.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        # standalone_mode=False returns ctx.exit()'s code instead of raising
        code = cli.main(args=argv, prog_name="mfc", standalone_mode=False)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.UsageError as exc:
        exc.show()
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UsageError as exc:
        click.echo(render(Diagnostic.from_error(exc)), err=True)
        sys.exit(2)
    except MfcError as exc:
        click.echo(render(Diagnostic.from_error(exc), _source_of(exc)), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        sys.exit(EXIT_TERMINATED)
    except BrokenPipeError:
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _source_of(exc: MfcError) -> str | None:
    """The text of the file a span points at, for the caret line (None if unreadable)."""
    if exc.span is None:
        return None
    try:
        return Path(exc.span.file).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
