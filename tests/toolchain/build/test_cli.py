"""The store commands as a user runs them: build, create, list, show, cp, rm, inspect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import pytest

from toolchain.cli import main
from toolchain.store import Store, parse_name


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.fixture
def models(tmp_path: Path) -> str:
    return str(tmp_path / "models")


@pytest.fixture
def tiny_project(tmp_path: Path, tiny_dir: Path) -> Path:
    d = tmp_path / "models-src" / "tiny"
    d.mkdir(parents=True)
    shutil.copy(tiny_dir / "tiny.gguf", d / "weights.gguf")
    shutil.copy(tiny_dir / "lora.gguf", d / "lora.gguf")
    (d / "Modelfile").write_text(
        'FROM ./weights.gguf\nADAPTER ./lora.gguf\nSYSTEM "be brief"\nLICENSE MIT\n'
        "PARAMETER temperature 0.3\nPARAMETER stop END\nMESSAGE user hi\n"
    )
    return d


def test_build_names_the_model_after_its_folder(
    capsys: pytest.CaptureFixture[str], tiny_project: Path, models: str
) -> None:
    code, out, err = run(capsys, "build", str(tiny_project / "Modelfile"), "--models", models)
    assert code == 0, err
    assert "building tiny:latest (named after the folder" in err
    assert out.startswith("built tiny:latest (")
    assert Store(models).names() == [parse_name("tiny")]


def test_create_without_a_modelfile_uses_the_current_folder(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    tiny_dir: Path,
    models: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "weights-only"
    folder.mkdir()
    shutil.copy(tiny_dir / "other.gguf", folder / "model.gguf")
    monkeypatch.chdir(folder)
    code, out, err = run(capsys, "create", "Mine:v1", "--models", models, "--json")
    assert code == 0, err
    last = json.loads(out.splitlines()[-1])
    assert last["model"] == "Mine:v1"
    layers = json.loads(Store(models).manifest_path(parse_name("Mine:v1")).read_bytes())["layers"]
    assert layers[0]["from"] == "model.gguf"


def test_list_show_cp_rm(
    capsys: pytest.CaptureFixture[str], tiny_project: Path, models: str
) -> None:
    assert (
        run(capsys, "build", str(tiny_project / "Modelfile"), "-t", "a", "--models", models)[0] == 0
    )
    store = Store(models)
    digest = store.read_manifest("a").digest

    code, out, _ = run(capsys, "list", "--models", models, "--json")
    listed = json.loads(out)["models"]
    assert code == 0 and [m["name"] for m in listed] == ["a:latest"]
    assert listed[0]["digest"] == digest
    assert listed[0]["details"]["family"] == "llama"
    assert listed[0]["details"]["quantization_level"] == "F16"
    code, out, _ = run(capsys, "list", "--models", models)
    assert out.splitlines()[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert out.splitlines()[1].startswith("a:latest") and digest[:12] in out

    assert run(capsys, "show", "a", "--system", "--models", models)[1] == "be brief\n"
    assert run(capsys, "show", "a", "--license", "--models", models)[1] == "MIT\n"
    params = run(capsys, "show", "a", "--parameters", "--models", models)[1]
    assert params.splitlines() == [f'{"stop":<30} "END"', f"{'temperature':<30} 0.3"]
    code, out, _ = run(capsys, "show", "a", "--json", "--models", models)
    shown = json.loads(out)
    assert shown["model_info"]["general.architecture"] == "llama"
    assert shown["capabilities"] == ["completion", "tools"]  # the detected chatml has .Tools
    assert shown["messages"] == [{"role": "user", "content": "hi"}]
    assert {t["name"] for t in shown["tensors"]} >= {"token_embd.weight"}
    summary = run(capsys, "show", "A", "--models", models)[1]
    assert "architecture" in summary and "adapter" in summary

    code, _, err = run(capsys, "show", "nope", "--models", models)
    assert code == 1 and "model 'nope:latest' not found" in err

    assert run(capsys, "cp", "a", "b", "--models", models)[0] == 0
    blobs = set(store.blobs.digests())
    # a missing name among several: nothing is removed
    code, _, err = run(capsys, "rm", "a", "missing", "--models", models)
    assert code == 1 and "model 'missing:latest' not found" in err
    assert {n.display() for n in store.names()} == {"a:latest", "b:latest"}
    code, out, _ = run(capsys, "rm", "a", "--models", models, "--json")
    assert json.loads(out) == {"deleted": ["a:latest"], "removed_blobs": [], "freed": 0}
    assert set(store.blobs.digests()) == blobs  # b still uses every blob
    code, out, _ = run(capsys, "rm", "b", "--models", models, "--json")
    assert set(json.loads(out)["removed_blobs"]) == blobs
    assert store.blobs.digests() == []


def test_inspect(capsys: pytest.CaptureFixture[str], tiny_dir: Path, tmp_path: Path) -> None:
    code, out, _ = run(capsys, "inspect", str(tiny_dir / "tiny.gguf"))
    assert code == 0
    assert "general.architecture" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("blk.0.attn_q")]
    assert rows == [["blk.0.attn_q.weight", "F16", "8", "x", "8", "128"]]
    code, out, _ = run(capsys, "inspect", str(tiny_dir / "tiny.gguf"), "--json")
    doc = json.loads(out)
    assert doc["metadata"]["general.file_type"] == {"type": "uint32", "value": 1}
    assert [(t["name"], t["shape"], t["bytes"]) for t in doc["tensors"]] == [
        ("token_embd.weight", [8, 16], 256),
        ("blk.0.attn_q.weight", [8, 8], 128),
        ("output_norm.weight", [8], 32),
    ]
    code, out, _ = run(capsys, "inspect", "--no-tensors", str(tiny_dir / "tiny.gguf"))
    assert code == 0 and "general.architecture" in out and "attn_q" not in out
    code, out, _ = run(capsys, "inspect", "--no-tensors", "--json", str(tiny_dir / "tiny.gguf"))
    assert json.loads(out) == {k: v for k, v in doc.items() if k != "tensors"}
    bad = tmp_path / "x.gguf"
    bad.write_text("hello")
    code, _, err = run(capsys, "inspect", str(bad))
    assert code == 1 and "not a GGUF file" in err


@pytest.mark.parametrize("offset,text", [
    (0, "Less than a second ago"), (1, "1 second ago"), (59, "59 seconds ago"),
    (90, "About a minute ago"), (120, "2 minutes ago"), (3599, "59 minutes ago"),
    (3600, "About an hour ago"), (5400, "2 hours ago"), (47 * 3600, "47 hours ago"),
    (48 * 3600, "2 days ago"), (14 * 86400, "2 weeks ago"), (60 * 86400, "2 months ago"),
    (2 * 365 * 86400, "2 years ago"), (-4 * 60, "4 minutes from now"),
    (-25 * 365 * 86400, "Forever"),
])  # fmt: skip
def test_times_read_as_the_reference_tables_show_them(offset: int, text: str) -> None:
    """`mfc list`'s MODIFIED and `mfc ps`'s UNTIL: Ollama's format.HumanTime."""
    from toolchain.cli.human import human_time

    now = 1_700_000_000.0
    assert human_time(now - offset, now=now) == text


#: every command that reads or writes the store
STORE_COMMANDS = (
    "build",
    "create",
    "list",
    "show",
    "cp",
    "rm",
    "inspect",
    "push",
    "pull",
    "export",
    "import",
)


def _options(name: str) -> dict[str, click.Option]:
    from toolchain.cli import cli

    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    return {p.name or "": p for p in command.params if isinstance(p, click.Option)}


@pytest.mark.parametrize("name", STORE_COMMANDS)
def test_store_commands_share_the_models_and_json_options(name: str) -> None:
    from toolchain.cli.store_options import JSON_HELP, MODELS_HELP

    options = _options(name)
    models, as_json = options["models"], options["as_json"]
    assert (models.opts, models.metavar, models.help) == (["--models"], "DIR", MODELS_HELP)
    assert isinstance(models.type, click.Path) and not models.type.file_okay
    assert (as_json.opts, as_json.is_flag, as_json.help) == (["--json"], True, JSON_HELP)


def test_every_models_option_is_the_shared_one() -> None:
    """Commands outside the store group (serve, template render) take the same
    `--models DIR`, with the same help and the same check that it is a folder."""
    from toolchain.cli import COMMANDS, cli
    from toolchain.cli.store_options import MODELS_HELP

    def walk(command: click.Command, path: str) -> dict[str, click.Command]:
        found = {path: command}
        if isinstance(command, click.Group):
            for sub, child in command.commands.items():
                found.update(walk(child, f"{path} {sub}"))
        return found

    commands: dict[str, click.Command] = {}
    for name in COMMANDS:
        command = cli.get_command(click.Context(cli), name)
        assert command is not None
        commands.update(walk(command, name))
    users = {}
    for path, command in commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and param.name == "models":
                users[path] = param
    assert {"serve", "template render", *STORE_COMMANDS} <= set(users)
    for path, models in users.items():
        shared = (["--models"], "DIR", MODELS_HELP)
        assert (models.opts, models.metavar, models.help) == shared, path
        assert isinstance(models.type, click.Path) and not models.type.file_okay, path


@pytest.mark.parametrize("name", ["build", "create", "push", "pull"])
def test_commands_that_reach_a_registry_share_the_insecure_option(name: str) -> None:
    from toolchain.cli.store_options import INSECURE_HELP

    insecure = _options(name)["insecure"]
    assert (insecure.opts, insecure.is_flag, insecure.help) == (["--insecure"], True, INSECURE_HELP)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("build", "no/such/Modelfile"), "no/such/Modelfile: no such Modelfile"),
        (("create", "bad name!"), "invalid model name: 'bad name!'"),
        (("show", "nope"), "model 'nope:latest' not found"),
        (("cp", "nope", "other"), "model 'nope:latest' not found"),
        (("rm", "nope"), "model 'nope:latest' not found"),
        (("inspect", "nope"), "model 'nope:latest' not found"),
        (("push", "bad name!"), "invalid model name: 'bad name!'"),
        (("pull", "m:"), "invalid model name: 'm:'"),
        (("export", "nope", "-o", "out.tar"), "model 'nope:latest' not found"),
    ],
)
def test_with_json_a_failure_ends_stdout_with_the_error(
    capsys: pytest.CaptureFixture[str],
    models: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *args, "--models", models, "--json")
    assert code == 1, err
    assert json.loads(out.splitlines()[-1]) == {"error": message}
    assert f"error: {message}" in err and "Traceback" not in err
    assert not Path(models).exists()  # nothing was written


def test_import_of_a_file_that_is_no_tarball_reports_json(
    capsys: pytest.CaptureFixture[str], models: str, tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.tar"
    bogus.write_text("not a tarball")
    code, out, _ = run(capsys, "import", str(bogus), "--models", models, "--json")
    assert code == 1
    assert json.loads(out.splitlines()[-1])["error"].startswith(f"cannot read {bogus}")
