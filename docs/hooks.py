"""MkDocs hook: the generated parts of the documentation site (never written twice by hand).

A page asks for generated text with an HTML comment on a line of its own; this hook replaces it
before the page is rendered:

* ``<!-- visnet:cli-all -->``: every ``visnet`` command (``visnet.cli.main.COMMANDS`` and the
  LightningCLI ones) with the output of its ``--help``, run in this process through the CLI's own
  entry point, so the page is the parser.
* ``<!-- visnet:cli ARGS -->``: the ``--help`` of one command, e.g. ``cache build``.
* ``<!-- visnet:bench NAME -->``: BENCHMARKS.md between ``<!-- NAME:start -->`` and
  ``<!-- NAME:end -->`` (the sections the benchmark scripts rewrite); ``visnet:bench-optional NAME``
  says how to measure it while ``scripts/NAME.py`` has not written its section yet.
* ``<!-- visnet:config-keys SECTION -->``: a table of the config keys of ``model`` (``ViSNetModule``
  and ``ViSNet`` arguments) or ``data`` (``ViSNetDataModule``): name, default, what (from the
  signature and the docstring's Args section).
* ``<!-- visnet:configs -->``: every ``configs/*.yaml`` with its header comment.
* ``<!-- visnet:readme HEADING -->``: the README's section under ``HEADING`` (its text up to the next
  heading), for the little text that lives in the README (the front page) and the site alike.
* ``<!-- visnet:runnable -->``: the ``python`` block right below runs as printed
  (``tests/test_docs.py``); it renders as nothing.

An unknown marker, a missing benchmark section or a failing command stops the build.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- visnet:([a-z-]+)\s*(.*?)\s*-->$", re.M)
HELP_COLUMNS = "100"
_help_cache: dict[str, str] = {}


def _help(args: str) -> str:
    """The text ``visnet ARGS --help`` prints (stdout), from the CLI's entry point in this process."""
    if args not in _help_cache:
        from visnet.cli.main import main

        os.environ["COLUMNS"] = HELP_COLUMNS
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                code = main([*args.split(), "--help"])
            except SystemExit as stop:  # argparse and jsonargparse exit after --help
                code = stop.code
        if code not in (0, None):
            raise RuntimeError(f"visnet {args} --help exited with {code}")
        _help_cache[args] = out.getvalue().rstrip()
    return _help_cache[args]


def _fence(text: str) -> str:
    return f"```text\n{text}\n```"


def cli_all() -> str:
    """One section per ``visnet`` command, from the command table and each parser's help."""
    from visnet.cli.main import COMMANDS, LIGHTNING_COMMANDS, USAGE

    summary = {}
    for line in USAGE.split("commands:", 1)[1].splitlines():
        match = re.match(r"^  (\w+)\s+(.*)$", line)
        if match:
            summary[match.group(1)] = match.group(2)
    parts = [_fence(USAGE)]
    for command in sorted(set(COMMANDS) | {"fit"}):
        heading = f"## `visnet {command}`\n\n{summary.get(command, '')}\n"
        if command == "fit":
            others = ", ".join(f"`visnet {c}`" for c in LIGHTNING_COMMANDS if c != "fit")
            heading += (
                f"\n`visnet fit` is a LightningCLI: every option is also a config key (`--model.lr` is "
                f"`model: lr:` in the YAML; see [Config keys](config.md)). {others} "
                "(the last with `--config`) take the same options.\n"
            )
        parts.append(f"{heading}\n{_fence(_help(command))}")
    return "\n\n".join(parts)


def bench(name: str) -> str:
    """The section ``name`` of BENCHMARKS.md, without its markers."""
    text = (REPO / "BENCHMARKS.md").read_text()
    match = re.search(rf"<!-- {re.escape(name)}:start -->\n(.*?)<!-- {re.escape(name)}:end -->", text, re.S)
    if match is None:
        raise KeyError(f"BENCHMARKS.md has no section {name!r} (markers <!-- {name}:start/end -->)")
    return match.group(1).strip()


def bench_optional(name: str) -> str:
    """The section ``name`` of BENCHMARKS.md, or how to measure it while it is missing."""
    try:
        return bench(name)
    except KeyError:
        if not (REPO / "scripts" / f"{name}.py").exists():
            raise KeyError(f"no benchmark script scripts/{name}.py") from None
        return (
            f'!!! note "Not measured yet"\n    `python scripts/{name}.py` writes this section '
            f"(`--help` for its options)."
        )


def docstring_args(obj: Any) -> dict[str, str]:
    """Argument name -> description from a Google-style ``Args:`` section (``a, b: text`` names several)."""
    doc = inspect.getdoc(obj) or ""
    section = re.search(r"^Args:\n(.*?)(?:\n\S|\Z)", doc, re.S | re.M)
    found: dict[str, str] = {}
    if section is None:
        return found
    names: list[str] = []
    for line in section.group(1).splitlines():
        entry = re.match(r"^    ([\w*, ]+):\s*(.*)$", line)
        if entry:
            names = [n.strip().lstrip("*") for n in entry.group(1).split(",")]
            for n in names:
                found[n] = entry.group(2)
        elif names and line.strip():
            for n in names:
                found[n] += " " + line.strip()
    return found


def _signature_rows(cls: type, prefix: str, skip: set[str]) -> list[str]:
    described = docstring_args(cls)
    rows = []
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or name in skip or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        default = "required" if param.default is param.empty else f"`{param.default!r}`"
        what = described.get(name, "").replace("|", "\\|")
        rows.append(f"| `{prefix}.{name}` | {default} | {what} |")
    return rows


def config_keys(section: str) -> str:
    """A Markdown table of the config keys of ``model`` or ``data``."""
    head = "| key | default | what |\n|---|---|---|\n"
    if section == "data":
        from visnet.data.datamodule import ViSNetDataModule

        return head + "\n".join(_signature_rows(ViSNetDataModule, "data", set()))
    if section == "model":
        from visnet.model import ViSNet
        from visnet.training.module import ViSNetModule

        # output_key, derivative and the statistics follow the data (ViSNetModule refuses them)
        set_from_data = {"output_key", "derivative", "mean", "std", "atomref", "output_head"}
        rows = _signature_rows(ViSNetModule, "model", set()) + _signature_rows(ViSNet, "model", set_from_data)
        return head + "\n".join(rows)
    raise KeyError(f"no config section {section!r} (model or data)")


def configs() -> str:
    """Every ``configs/*.yaml``: its name and the comment block at its top."""
    rows = ["| config | what |", "|---|---|"]
    for path in sorted((REPO / "configs").glob("*.yaml")):
        comment = []
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            text = line.lstrip("#").strip()
            if text and not text.startswith(("visnet ", "--", "Smoke run")) and "  " not in line[1:3]:
                comment.append(text)
        what = " ".join(comment).replace("|", "\\|")
        rows.append(f"| `configs/{path.name}` | {what} |")
    return "\n".join(rows)


def readme(heading: str) -> str:
    """The README's text under the heading ``heading``, up to the next heading of any level."""
    lines = (REPO / "README.md").read_text().splitlines()
    fenced, start = False, None
    for k, line in enumerate(lines):
        fenced = fenced != line.startswith("```")
        title = re.match(r"^(#+) (.*)$", line) if not fenced else None
        if title and start is not None:
            return "\n".join(lines[start:k]).strip()
        if title and start is None and title.group(2).strip() == heading:
            start = k + 1
    if start is None:
        raise KeyError(f"README.md has no section {heading!r}")
    return "\n".join(lines[start:]).strip()


def _repo_links(text: str) -> str:
    """Links to repository files (README-relative) as code: the site holds docs/ only."""
    return re.sub(r"\[([^\]]+)\]\((?!https?:|#)([^)]+)\)", r"`\2`", text)


def _docs_links(text: str, page_uri: str) -> str:
    """Links written from the repository root into ``docs/`` (``docs/assets/x.png`` in BENCHMARKS.md)
    made relative to the page ``page_uri`` (e.g. ``benchmarks/training.md``) that includes them."""
    return text.replace("](docs/", "](" + "../" * page_uri.count("/"))


def _render(match: re.Match[str], page_uri: str = "index.md") -> str:
    kind, arg = match.group(1), match.group(2)
    if kind == "cli-all":
        return cli_all()
    if kind == "cli":
        return _fence(_help(arg))
    if kind == "bench":
        return _docs_links(bench(arg), page_uri)
    if kind == "bench-optional":
        return _docs_links(bench_optional(arg), page_uri)
    if kind == "config-keys":
        return config_keys(arg)
    if kind == "configs":
        return configs()
    if kind == "readme":
        return _repo_links(readme(arg))
    if kind == "runnable":
        return ""
    raise KeyError(f"unknown docs marker visnet:{kind}")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: replace the ``<!-- visnet:... -->`` markers of a page by their text."""
    return MARKER.sub(lambda match: _render(match, page.file.src_uri), markdown)
