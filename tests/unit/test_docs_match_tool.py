"""The docs name only commands and options that exist: every `docsync ...` command line in README.md, docs/,
config.example.toml, systemd/ and cron.example is run with ``--help`` (in-process, through Click's test runner)
and each option it shows must belong to that command (or be a global option)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from docsync_cli.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "config.example.toml",
                    *(ROOT / "systemd").iterdir(), ROOT / "cron.example"])
# `docsync` at a command position: start, after whitespace, a backtick, "=", "(", or a bin path (/usr/local/bin/)
OCCURRENCE = re.compile(r"(?:(?<=^)|(?<=[\s`=('\"])|(?<=bin/))docsync(?= )")
# ...but not as a user or group name: `runuser -u docsync`, `install -o docsync -g docsync`, `chown docsync`
AS_A_NAME = re.compile(r"(?:(?<![\w-])-\w|--[\w-]+|chown|useradd|groupadd)[\s=]+$")
STOP = re.compile(r"[`|;&)#\"'<>]|\s--\s|\\$")
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
CRON_LINE = re.compile(r"^\s*(?:@\w+|[\d*/,-]+(?:\s+[\d*/,-]+){4})\s+\S+\s+(.*)$")  # schedule, user, command
TOP_LEVEL = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Mention:
    where: str
    line: str
    words: tuple[str, ...]
    options: tuple[str, ...]


def code_parts(path: Path) -> list[tuple[int, str, bool]]:
    """(line number, text, strong) for the parts of a file that may show commands. Strong: certainly a command
    (Markdown code blocks and `spans`, backtick spans, Exec*= values, cron commands, "... with:  docsync x");
    weak: an indented list in a comment, which may be prose that mentions the tool by name."""
    lines = path.read_text(encoding="utf-8").splitlines()
    parts: list[tuple[int, str, bool]] = []
    fenced = False
    paragraph: list[str] = []
    start = 0

    def flush() -> None:  # inline `spans` may wrap across the lines of a Markdown paragraph
        parts.extend((start, span, True) for span in re.findall(r"`([^`]+)`", " ".join(paragraph)))
        paragraph.clear()

    for number, line in enumerate(lines, start=1):
        if path.suffix == ".md":
            if line.lstrip().startswith("```"):
                flush()
                fenced = not fenced
                continue
            if fenced:
                parts.append((number, line.split(" #", 1)[0], True))
            elif line.strip():
                if not paragraph:
                    start = number
                paragraph.append(line.strip())
            else:
                flush()
            continue
        parts.extend((number, span, True) for span in re.findall(r"`([^`]+)`", line))
        text = re.sub(r"`[^`]*`", " ", line)
        if text.lstrip().startswith("#"):
            body = text.lstrip()[1:]
            parts.extend((number, m.group(1), True) for m in re.finditer(r":\s{2,}(.*)$", body))
            parts.extend((number, m.group(1), False) for m in re.finditer(r"^ {3,}(.*)$", body))
        elif re.match(r"\s*Exec\w*=", text):
            parts.append((number, text.partition("=")[2], True))
        elif cron := CRON_LINE.match(text):
            parts.append((number, cron.group(1), True))
    flush()
    return parts


def mentions() -> list[Mention]:
    found = []
    for path in DOC_FILES:
        for number, text, strong in code_parts(path):
            for match in OCCURRENCE.finditer(text):
                if AS_A_NAME.search(text[: match.start()]):
                    continue
                rest = STOP.split(text[match.end():], maxsplit=1)[0]
                tokens = rest.split()
                words: list[str] = []
                for token in tokens:
                    if not re.fullmatch(r"[a-z][a-z-]*", token):
                        break
                    words.append(token)
                options = tuple(o for t in tokens for o in OPTION.findall(t))
                if not words and not options:
                    continue  # a bare `docsync` (the tool's name) or its path
                if not strong and (not words or words[0] not in TOP_LEVEL):
                    continue  # prose in a comment ("docsync takes its own lock")
                found.append(Mention(f"{path.relative_to(ROOT)}:{number}", text.strip(), tuple(words), options))
    return found


MENTIONS = mentions()


def test_the_docs_name_commands_at_all() -> None:
    """The extraction itself works: the commands every doc must mention are found."""
    commands = {m.words[:1] for m in MENTIONS}
    assert {("sync",), ("check",), ("status",), ("preview",), ("demo",), ("sandbox",)} <= commands
    assert any(m.where.startswith("systemd/") and m.words == ("sync",) for m in MENTIONS)
    assert any(m.where.startswith("cron.example") and m.options == ("--full",) for m in MENTIONS)


def is_group(command: Any) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def resolve(words: tuple[str, ...]) -> tuple[list[str], Any, list[Any]]:
    """The command path the words name (words after it are arguments, e.g. a cron user name)."""
    command: Any = typer.main.get_command(app)
    chain = [command]
    path: list[str] = []
    for word in words:
        if not is_group(command):
            break
        sub = command.commands.get(word)
        if sub is None:
            raise AssertionError(f"`docsync {' '.join([*path, word])}` is not a command")
        command = sub
        chain.append(sub)
        path.append(word)
    if is_group(command) and words:
        raise AssertionError(f"`docsync {' '.join(path)}` needs a subcommand")
    return path, command, chain


@pytest.mark.parametrize("mention", MENTIONS, ids=[f"{m.where} {m.line[:60]}" for m in MENTIONS])
def test_every_documented_command_line_exists(mention: Mention) -> None:
    path, _command, chain = resolve(mention.words)
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, f"{mention.where}: `docsync {' '.join(path)} --help` failed: {result.output}"
    known: set[str] = {"--help"}
    for command in chain:
        for param in command.params:
            known.update(getattr(param, "opts", []))
            known.update(getattr(param, "secondary_opts", []))
    for option in mention.options:
        name = "-v" if re.fullmatch(r"-v+", option) else option
        assert name in known, f"{mention.where}: `docsync {' '.join(path)}` has no option {option}: {mention.line}"


def test_messages_point_to_readme_sections_that_exist() -> None:
    headings = {line.lstrip("#").strip().lower() for line in (ROOT / "README.md").read_text().splitlines()
                if line.startswith("#")}
    named = {m.group(1) for path in (ROOT / "docsync_cli").rglob("*.py")
             for m in re.finditer(r"README's\s+\"?\s*\"?([A-Z][\w -]*?)\s+\"?\s*\"?section", path.read_text())}
    assert named, "no message names a README section (the pattern is broken)"
    assert {name for name in named if name.lower() not in headings} == set()


def test_docs_carry_no_paths_of_the_machine_they_were_written_on() -> None:
    files = [*DOC_FILES, ROOT / "ARCHITECTURE.md", ROOT / "bench" / "README.md", *(ROOT / "bench").glob("*.py"),
             *(ROOT / "scripts").glob("*.sh")]
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in files
             for n, line in enumerate(path.read_text().splitlines(), start=1)
             if re.search(r"(?<![\w.])/(?:root|home|work|Users)/\w", line)]
    assert found == []


def test_no_doc_installs_the_bare_pypi_name() -> None:
    """`docsync` on PyPI is someone else's project: docs install a wheel or the checkout, never that name."""
    bare = re.compile(r"(?:pip|pipx)\s+install\s+(?:-\S+\s+)*(?:--upgrade\s+)?docsync(?![\w./-])")
    found = [f"{path.relative_to(ROOT)}:{n}" for path in DOC_FILES
             for n, line in enumerate(path.read_text().splitlines(), start=1) if bare.search(line)]
    assert found == []
    import tomllib

    name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    assert name == "docsync-espocrm"



def _all_commands() -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []

    def walk(prefix: str, command: Any) -> None:
        if hasattr(command, "commands"):  # a group
            for name, sub in command.commands.items():
                walk(f"{prefix} {name}".strip(), sub)
        else:
            found.append((prefix, command))

    walk("", typer.main.get_command(app))
    return found


@pytest.mark.parametrize(("name", "command"), _all_commands(), ids=[n for n, _ in _all_commands()])
def test_every_option_explains_itself_in_help(name: str, command: Any) -> None:
    """`--help` of every command: each option has a help text and a readable metavar (`prune --wait` had none,
    `sync --id` showed `<list[str]>`)."""
    for param in command.params:
        if getattr(param, "param_type_name", "") != "option" or param.hidden:
            continue
        assert (param.help or "").strip(), f"docsync {name} {param.opts[0]}: no help text"
    shown = CliRunner().invoke(app, [*name.split(), "--help"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "list[" not in shown.output, shown.output


def test_every_doc_creates_the_service_user_the_same_way() -> None:
    """README, scheduling.md, the unit headers and cron.example give one `useradd` line (the unit's header once
    lacked --user-group, so `install -o docsync -g docsync` could fail on a host without USERGROUPS_ENAB)."""
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "systemd").iterdir(), ROOT / "cron.example"]
    lines = {re.sub(r"^#\s*", "", line).strip() for path in files
             for line in path.read_text(encoding="utf-8").splitlines() if "useradd " in line}
    assert len(lines) == 1, lines
