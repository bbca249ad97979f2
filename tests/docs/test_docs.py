"""The README and docs/ stay true: generated pages current, links and anchors resolving,
commands that parse, and the Python example shown as the file the tests run."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import reference
from jobs.cli import build_parser, load_job_config, preset_names
from jobs.flags import overrides_from
from pipeline.config_loading import merge_overrides, validate_config
from pipeline.training.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLE = ROOT / "docs" / "examples" / "python_api.py"

FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"`[^`]*`")
MARKER = re.compile(r"<!-- example: (\S+) -->\n```\w*\n(.*?)^```", re.S | re.M)


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text as rendered (code marks dropped, a link
    as its text), lowercased, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file; a repeated one gets -1, -2, ..."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(path.read_text()):
        if match := HEADING.match(line):
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    return [
        target
        for line in prose_lines(path.read_text())
        for target in LINK.findall(CODE_SPAN.sub("``", line))
    ]


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("Export: searchable PDFs, hOCR and ALTO", "export-searchable-pdfs-hocr-and-alto"),
        ("`ray job submit`", "ray-job-submit"),
        ("Kubernetes (KubeRay)", "kubernetes-kuberay"),
        ("shardscribe — design", "shardscribe--design"),
        ("train: input_settings", "train-input_settings"),
        ("A [linked](x.md) heading", "a-linked-heading"),
    ],
)
def test_slugs_are_githubs(heading, expected):
    assert slug(heading) == expected


def test_repeated_headings_get_numbered_anchors(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n## Input\n## Input\n```\n## not a heading\n```\n## Input\n")
    assert anchors(page) == {"title", "input", "input-1", "input-2"}


@pytest.mark.parametrize("name", sorted(reference.pages()))
def test_generated_pages_are_current(name):
    written = (ROOT / "docs" / name).read_text()
    assert written == reference.pages()[name], (
        f"docs/{name} is out of date: run `python -m jobs.reference`"
    )


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_relative_links_and_anchors_resolve(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        resolved = (page.parent / file).resolve() if file else page
        if not resolved.exists():
            broken.append(f"{target}: no {file}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {_name(resolved)}")
    assert not broken, f"{_name(page)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_heading_levels_are_not_skipped(page):
    level, skips = 0, []
    for line in prose_lines(page.read_text()):
        if match := HEADING.match(line):
            new = len(match.group(1))
            if new > level + 1:
                skips.append(line)
            level = new
    assert not skips, f"{_name(page)} skips a heading level at: {skips}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(README)}
    unlinked = [_name(page) for page in PAGES[1:] if page.resolve() not in linked]
    assert not unlinked


def test_the_readme_stays_a_front_page():
    assert len(README.read_text().splitlines()) <= 250


def test_examples_are_shown_as_their_files_are():
    shown = {
        (page, example): block
        for page in PAGES
        for example, block in MARKER.findall(page.read_text())
    }
    assert (README, "docs/examples/python_api.py") in shown
    for (page, example), block in shown.items():
        assert block == (ROOT / example).read_text(), f"{_name(page)} shows an old {example}"


def test_the_python_example_runs(tmp_path):
    """The README's Python example, as a user runs it after `shardscribe demo`: the
    bundled model on the demo's shards, a local Ray, no network."""
    from pipeline.synthetic.demo_lines import write_sample_shards  # the demo's own input

    write_sample_shards(tmp_path / "shardscribe-demo" / "input")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("3 shards committed, 0 already done, 0 failed; 24 rows, 0 row")
    assert lines[1].startswith("[{'key': '0000-0000', 'text': ")
    assert "'error': None" in lines[1]
    assert lines[2].startswith("[{'key': ")


# ------------------------------------------------------------------ commands shown


def shell_commands(page: Path) -> list[list[str]]:
    """Every simple command of the page's bash blocks, as words (comments dropped, lines
    joined where they end with a backslash, `&&` / `;` / `|` separating commands)."""
    commands: list[list[str]] = []
    block: list[str] | None = None  # the lines of the open fence; None outside one
    shell = False
    for line in page.read_text().splitlines():
        if FENCE.match(line) and block is None:
            block, shell = [], line.strip("`~ ") in ("bash", "sh", "shell")
        elif FENCE.match(line):
            text = "\n".join(block).replace("\\\n", " ") if shell else ""
            for command_line in text.splitlines():
                commands += _split(shlex.split(command_line, comments=True))
            block = None
        elif block is not None:
            block.append(line)
    return commands


def _split(words: list[str]) -> list[list[str]]:
    commands, current = [], []
    for word in words:
        if word in ("&&", "||", ";", "|"):
            commands.append(current)
            current = []
        else:
            current.append(word)
    commands.append(current)
    while commands and not commands[-1]:
        commands.pop()
    return [command for command in commands if command]


def shardscribe_argv(words: list[str]) -> list[str] | None:
    """The `shardscribe` arguments a command amounts to, or None if it is no
    shardscribe command (`ray job submit ... -- python -m jobs.ocr` is one)."""
    if words[:3] == ["ray", "job", "submit"] and "--" in words:
        words = words[words.index("--") + 1 :]
    if words and words[0] == "shardscribe":
        return words[1:]
    if len(words) >= 3 and words[0] in ("python", "python3") and words[1] == "-m":
        module, rest = words[2], words[3:]
        if module == "jobs":
            return rest
        name = module.removeprefix("jobs.")
        if name in preset_names():
            return ["run", "--preset", name, *rest]
        if name == "train":
            return ["train", *rest]
    return None


COMMANDS = [
    (page, words)
    for page in PAGES
    for words in shell_commands(page)
    if not words[0].startswith(("export", "kubectl", "eval", "."))
]


def test_the_pages_show_commands():
    assert len([w for page, w in COMMANDS if page == README and shardscribe_argv(w)]) >= 10


@pytest.mark.parametrize(
    ("page", "words"), COMMANDS, ids=[f"{_name(p)}:{' '.join(w)[:60]}" for p, w in COMMANDS]
)
def test_commands_shown_parse(page, words):
    """Each shardscribe command shown parses, and a run's or training's flags make a
    valid config; each `python -m` module and each script exists."""
    argv = shardscribe_argv(words)
    if argv is not None:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as stop:
            pytest.fail(f"{' '.join(words)!r} does not parse (exit {stop.code})")
        if args.command == "run" and not args.config and not args.choices:
            load_job_config(None, args, args.preset)
        if args.command == "train" and not args.config:
            validate_config(merge_overrides({}, overrides_from(args, TrainConfig)), TrainConfig)
    elif words[0] in ("python", "python3") and words[1] == "-m":
        assert importlib.util.find_spec(words[2]) is not None, f"no module {words[2]}"
    elif "/" in words[0]:
        script = ROOT / words[0]
        assert script.is_file() and os.access(script, os.X_OK), f"no script {words[0]}"


def inline_commands(page: Path) -> list[str]:
    """The commands quoted inline in the page's prose (`python -m ...`, `shardscribe ...`)."""
    return [
        span.strip("`")
        for line in prose_lines(page.read_text())
        for span in CODE_SPAN.findall(line)
        if span.startswith(("`python -m ", "`shardscribe "))
    ]


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_modules_named_inline_exist(page):
    modules = {c.split()[2] for c in inline_commands(page) if c.startswith("python -m ")}
    assert modules or page != README
    missing = sorted(m for m in modules if "*" not in m and importlib.util.find_spec(m) is None)
    assert not missing


def test_the_readmes_inline_commands_parse():
    for command in inline_commands(README):
        argv = shardscribe_argv(shlex.split(command))
        if argv is not None:
            build_parser().parse_args(argv)
