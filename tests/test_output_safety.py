"""Log text is data in every output (issue 15): an adversarial log (mentions, issue
references, HTML, links, emphasis, backtick runs, a file name with a newline and a heading in
it, terminal escape sequences, C1 controls, bidi overrides) through `analyze` (md, json,
text), `scan` (md, json, text) and `timeline --format md`. Each Markdown output and every
golden report is parsed with markdown-it (CommonMark plus GFM tables and strikethrough) and
its tokens walked: no HTML but our own, no link, no mention or reference left as plain text,
no heading, list or quote made by log text, no table row with a pipe of its own. No output
holds a terminal control. And the size caps: one 40 MB line, many distinct error lines, and
the Markdown cap cutting between blocks, keeping "What to change", ending with its note."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token

import forensics
from forensics.catalog import load_catalog
from forensics.cli import cli
from forensics.model import Analysis
from forensics.report import render
from forensics.report.fit import cut_blocks
from forensics.report.markdown import MAX_CHARS, render_markdown
from forensics.text import LINE_CHARS, clip, md_code, md_fence, md_text, scrub, term_safe

from .conftest import SAMPLES

ESC = "\x1b"
CONTROLS = (
    f"{ESC}c",  # reset the terminal
    f"{ESC}]0;pwned-title{ESC}\\",  # window title, ST-terminated
    f"{ESC}]8;;https://osc8.invalid/{ESC}\\click{ESC}]8;;{ESC}\\",  # hyperlink
    f"{ESC}P1$qm-dcs-body{ESC}\\",  # DCS
    "\u009b31m",  # 8-bit CSI
    "\u202egnp.exe",  # right-to-left override
    "\u2066isolated\u2069",  # left-to-right isolate
    "\u200fmark",  # right-to-left mark
    "\x08back",
)
MARKUP = ("@octocat", "#123", "GH-45", "octo/repo#7", "<img src=x onerror=alert(1)>", "<details>",
          "[x](javascript:alert(1))", "**bold**", "_it_", "~~gone~~", "$x$", "```", "`` two ``",
          "https://evil.invalid/x", "&lt;b&gt;", "`lone")
PAYLOAD = " ".join(MARKUP + CONTROLS)
# words of the payload that must never be markup (they may be plain text or code)
MARKERS = ("octocat", "onerror", "javascript", "bold", "gone", "evil", "heading")
# what a terminal control's removal must take whole: never shown at all
SWALLOWED = ("pwned-title", "osc8.invalid", "dcs-body")

UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
MENTION_OR_LINK = re.compile(r"(?<![\w`])@[0-9A-Za-z]|#\d|\bGH-\d|://|\bwww\.", re.IGNORECASE)
OUR_HTML_BLOCKS = re.compile(
    r"<details><summary>Last \d+ lines of <code>[^<>\n]*</code></summary>\n|</details>\n")
OUR_HEADINGS = re.compile(
    r"forensics(?: scan)?: .+|Root cause: .+|Also found|Ranks|What to change|Timeline"
    r"|Environment \(from the log\)|Input problems|NCCL Flight Recorder|CUDA memory snapshot.*"
    r"|Failures by root cause|Suspect nodes|Failures no signature knows \(clustered\)"
    r"|Most frequent fixes|Failures by (?:user|partition)|Completed with unhealthy metrics"
    r"|Interrupted|Ending unknown|Could not be analyzed")
GFM = MarkdownIt("commonmark").enable("table").enable("strikethrough")


def adversarial_log() -> str:
    """A failed run whose captures, checkpoint path, metric names, tail and evidence carry
    the payload."""
    slug = PAYLOAD.replace(" ", "_")
    return "\n".join([
        "[2025-03-02 11:02:10,511] [INFO] [axolotl.train] Starting trainer...",
        "{'loss': 0.98, 'grad_norm': 0.6, 'learning_rate': 1.2e-05, 'epoch': 0.1, "
        "'@octocat <b>x</b> #12 |pipe| `tick` ~~s~~': 3.0}",
        f"Saving model checkpoint to /out/{slug}/checkpoint-10",
        "{'loss': 0.94, 'grad_norm': 0.5, 'learning_rate': 1.4e-05, 'epoch': 0.2, "
        "'@octocat <b>x</b> #12 |pipe| `tick` ~~s~~': 3.1}",
        "# heading from the log",
        "```",
        "`````",
        "Traceback (most recent call last):",
        '  File "train.py", line 1, in <module>',
        f"FileNotFoundError: [Errno 2] No such file or directory: '{PAYLOAD}'",
    ]) + "\n"


def unknown_failure_log() -> str:
    """A failure no signature knows: the scan clusters its line (the payload outside quotes,
    which the template would mask)."""
    return "\n".join(["Traceback (most recent call last):", '  File "x.py", line 2, in <module>',
                      f"ValueError: {PAYLOAD.replace(chr(39), '')}"]) + "\n"


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("adversarial")
    (root / "adversarial.log").write_text(adversarial_log(), encoding="utf-8")
    (root / "slurm").mkdir()
    (root / "slurm" / "slurm-2001.out").write_text(adversarial_log(), encoding="utf-8")
    (root / "slurm" / "slurm-2002.out").write_text(unknown_failure_log(), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def odd_name_job(logs) -> Path | None:
    """A job folder whose log's name has a newline, a heading, a mention, HTML, a backtick and
    a terminal reset in it (None where the file system refuses such a name)."""
    job = logs / "job"
    job.mkdir()
    try:
        (job / f"x\n# heading @octocat <b>hi<b> `x{ESC}c.log").write_text(
            adversarial_log(), encoding="utf-8")
    except OSError:
        return None
    return job


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.stdout


@pytest.fixture(scope="module")
def outputs(logs, odd_name_job) -> dict[str, str]:
    """Every output of the adversarial inputs, by name (`format:what`)."""
    log = str(logs / "adversarial.log")
    found = {f"{fmt}:analyze": run("analyze", "--format", fmt, log)
             for fmt in ("md", "json", "text")}
    if odd_name_job is not None:
        found |= {f"{fmt}:odd-name": run("analyze", "--format", fmt, str(odd_name_job))
                  for fmt in ("md", "json", "text")}
    found["md:timeline"] = run("timeline", "--format", "md", log)
    for fmt in ("md", "json", "text"):
        out = logs / f"scan-{fmt}"
        found[f"{fmt}:scan"] = run("scan", str(logs / "slurm"), "--out", str(out), "--format",
                                   fmt, "--jobs", "1")
    return found


# -- the oracles ---------------------------------------------------------------------------


def assert_terminal_safe(text: str, where: str) -> None:
    found = UNSAFE.search(text)
    assert found is None, (f"{where}: {found.group()!r} at {found.start()}: "
                           f"{text[max(0, found.start() - 40):found.start() + 40]!r}")


def json_strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_strings(item)


def walk(tokens: list[Token]) -> Iterator[tuple[Token, int]]:
    """Every token with how many emphasis, strong or strikethrough spans it is inside."""
    for token in tokens:
        yield token, 0
        depth = 0
        for child in token.children or ():
            styled = child.type.startswith(("em_", "strong_", "s_"))
            depth -= styled and child.nesting < 0
            yield child, depth
            depth += styled and child.nesting > 0


def catalog_text() -> str:
    catalog = load_catalog()
    return "\n".join(f"{s.cause}\n{s.fix}\n{' '.join(s.references)}" for s in catalog.signatures)


def markdown_problems(text: str) -> list[str]:
    """What in `text` GitHub would render as markup that our templates do not write."""
    problems = []
    lines = text.split("\n")
    for token, emphasis in walk(GFM.parse(text)):
        kind = token.type
        if kind == "html_block" and not OUR_HTML_BLOCKS.fullmatch(token.content):
            problems.append(f"HTML block {token.content[:80]!r}")
        elif kind == "html_inline" and token.content not in ("<sub>", "</sub>"):
            problems.append(f"inline HTML {token.content!r}")
        elif kind in ("link_open", "image") and str(token.attrs.get("href") or token.attrs.get(
                "src")) not in catalog_text():
            problems.append(f"{kind} {token.attrs}")
        elif kind == "text" and MENTION_OR_LINK.search(token.content):
            problems.append(f"linked by GitHub: {token.content[:80]!r}")
        elif kind == "text" and emphasis and any(m in token.content for m in MARKERS):
            problems.append(f"log text emphasised: {token.content[:80]!r}")
        elif kind == "heading_open" and (token.markup not in ("##", "###") or not OUR_HEADINGS
                                         .fullmatch(lines[token.map[0]].lstrip("#").strip())):
            problems.append(f"heading {lines[token.map[0]][:80]!r}")
        elif kind in ("ordered_list_open", "blockquote_open", "hr", "s_open") or (
                kind == "bullet_list_open" and token.level):
            problems.append(f"{kind} at line {token.map and token.map[0]}")
        elif kind == "table_open":
            problems += _table_problems(lines[token.map[0]:token.map[1]])
    return problems


def _table_problems(rows: list[str]) -> list[str]:
    """Rows with another number of cells than the head: a pipe of the log's own."""
    cells = [len(re.findall(r"(?<!\\)\|", row)) for row in rows]
    return [f"table row {row[:80]!r}" for row, n in zip(rows, cells, strict=True)
            if n != cells[0]]


# -- the adversarial inputs ----------------------------------------------------------------


def output(outputs: dict[str, str], name: str) -> str:
    if name not in outputs:
        pytest.skip("this file system refuses the odd file name")
    return outputs[name]


def test_the_payload_reaches_the_reports(outputs):
    """The log text is shown (as text or code), only the controls are gone: the tests below
    check real output, not an empty report."""
    for name in ("md:analyze", "text:analyze", "json:analyze"):
        for word in ("octocat", "onerror", "javascript", "gnp.exe", "isolated", "click"):
            assert word in outputs[name], (name, word)
    assert "octocat" in outputs["md:scan"] and "octocat" in outputs["md:timeline"]
    assert "# heading @octocat" in output(outputs, "md:odd-name")


@pytest.mark.parametrize("name", ["md:analyze", "md:odd-name", "md:scan", "md:timeline"])
def test_adversarial_markdown_renders_no_markup_from_the_log(outputs, name):
    assert markdown_problems(output(outputs, name)) == []


@pytest.mark.parametrize("name", ["md:analyze", "json:analyze", "text:analyze", "md:odd-name",
                                  "json:odd-name", "text:odd-name", "md:timeline", "md:scan",
                                  "json:scan"])
def test_no_terminal_control_in_any_output(outputs, name):
    text = output(outputs, name)
    assert_terminal_safe(text, name)
    if name.startswith("json:"):
        for string in json_strings(json.loads(text)):
            assert_terminal_safe(string, name)
    for swallowed in SWALLOWED:
        assert swallowed not in text, (name, swallowed)


def test_the_scan_text_view_is_terminal_safe_apart_from_its_own_colours(outputs):
    """The scan's text view is rich's rendering, with colour codes of its own: none of the
    log's sequences and no C1 or bidi control are left once rich's SGR codes are removed."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", outputs["text:scan"])
    assert_terminal_safe(plain, "text:scan")
    assert "octocat" in plain and not any(word in plain for word in SWALLOWED)


@pytest.mark.parametrize("golden", sorted((SAMPLES / "golden").glob("*.md")),
                         ids=lambda p: p.name)
def test_golden_reports_render_only_our_markup(golden):
    assert markdown_problems(golden.read_text(encoding="utf-8")) == []


def test_the_oracle_catches_what_leaked_before():
    """The checks above fail on the report the renderers used to write."""
    leaked = ("## forensics: run failed\n\nDetails: message = `no such file: 'x` @octocat "
              "#123 <img src=x onerror=alert(1)> **bold**'`.\n\n| a | b |\n|---|---|\n"
              "| x | y | z |\n\nSeen at `x\n# heading`.\n\n- - nested\n")
    problems = "\n".join(markdown_problems(leaked))
    for what in ("inline HTML", "linked by GitHub", "emphasised", "heading '# heading",
                 "table row", "bullet_list_open"):
        assert what in problems, what
    with pytest.raises(AssertionError):
        assert_terminal_safe("ok \u202e", "x")


# -- the escaping functions, one construct at a time ----------------------------------------


@pytest.mark.parametrize("sequence", CONTROLS)
def test_term_safe_removes_each_control_whole(sequence):
    cleaned = term_safe(f"before {sequence} after")
    assert UNSAFE.search(cleaned) is None
    assert cleaned.startswith("before ") and cleaned.endswith(" after")
    assert not any(word in cleaned for word in SWALLOWED)


def test_term_safe_keeps_text_newlines_and_tabs():
    assert term_safe("a\tb\nc — ü ✓") == "a\tb\nc — ü ✓"
    assert term_safe(f"{ESC}]0;unterminated title\nnext line") == "\nnext line"


@pytest.mark.parametrize("text", ["x\n# heading", "# heading", "- item", "1. item", "> quote",
                                  "---", "===", "<b>bold</b>", "<!-- c -->", "&amp;",
                                  "[x](javascript:alert(1))", "![i](http://x/i.png)",
                                  "**b** *i* _i_ ~~s~~ `c`", "@octocat", "see #123 and GH-4",
                                  "octo/repo#7", "user@example.com", "https://x.invalid/a",
                                  "www.example.com", "a | b", "$x^2$", "trailing \\"])
def test_md_text_leaves_no_markup(text):
    rendered = md_text(text)
    assert "\n" not in rendered
    for wrapper in ("{}", "- {}", "| {} |\n|---|\n| {} |", "**{}**"):
        tokens = list(walk(GFM.parse(wrapper.format(rendered, rendered))))
        kinds = {t.type for t, _ in tokens}
        assert not kinds & {"html_inline", "html_block", "link_open", "image", "heading_open",
                            "blockquote_open", "ordered_list_open", "hr", "s_open", "em_open",
                            "code_block", "fence"}, (wrapper, rendered, kinds)
        assert [t for t, _ in tokens if t.type == "bullet_list_open"] == (
            [] if wrapper != "- {}" else [tokens[0][0]]), (wrapper, rendered)
    shown = "".join(t.content for t, _ in walk(GFM.parse(rendered))
                    if t.type in ("text", "code_inline"))
    assert shown == text.replace("\n", " "), rendered


PIECES = st.sampled_from([*"ab1 #@*_`~[]()<>!&;|\\$-+=.:/\n\t'\"é", "www.", "http://", "GH-",
                          "&amp;", "<b>", "#1", "1.", "```", f"{ESC}[31m", "\u202e"])
MARKUP_TOKENS = {"html_inline", "html_block", "link_open", "image", "heading_open", "hr",
                 "blockquote_open", "ordered_list_open", "s_open", "em_open", "strong_open",
                 "code_block", "fence", "hardbreak", "softbreak"}


@settings(max_examples=1000, deadline=None)
@given(st.lists(PIECES, max_size=12).map("".join))
def test_md_text_shows_any_text_as_it_is(text):
    """Any mix of markup characters renders as exactly its text (one line, trimmed), at the
    start of a line, in a list item and in a table cell."""
    rendered = md_text(text)
    expected = re.sub(r"[\n\t]", " ", term_safe(text)).strip()
    for wrapper, kinds in (("{}", set()), ("- {}", {"bullet_list_open"}),
                           ("| {} |\n|---|", {"table_open"})):
        tokens = [t for t, _ in walk(GFM.parse(wrapper.format(rendered)))]
        assert {t.type for t in tokens} & (MARKUP_TOKENS | {"bullet_list_open", "table_open"}) \
            == kinds, (wrapper, rendered)
        shown = "".join(t.content for t in tokens if t.type in ("text", "code_inline"))
        assert shown == expected, (wrapper, rendered)


@settings(max_examples=500, deadline=None)
@given(st.lists(PIECES, min_size=1, max_size=12).map("".join))
def test_md_code_shows_any_text_as_one_code_span(text):
    expected = re.sub(r"[\n\t]", " ", term_safe(text))
    for source, in_table in (("x {} y", False), ("| {} |\n|---|", True)):
        tokens = [t for t, _ in walk(GFM.parse(source.format(md_code(text, in_table))))]
        assert [t.content for t in tokens if t.type == "code_inline"] in (
            [expected], [" "] if not expected.strip() else None), (source, md_code(text))


def test_md_text_escapes_only_what_would_be_markup():
    for plain in ("torch.OutOfMemoryError", "3.11", "79.25 GiB", "gpu-a17", "snake_case_name",
                  "2024-11-20 03:49:13,227", "--time", "a-b", "C:\\Users\\x", "loss < 1"):
        assert md_text(plain) == plain


def test_md_code_and_md_fence_cannot_be_closed_by_the_text():
    for text in ("a`b", "``x``", "`", "a ``` b", " lead", "trail` "):
        tokens = [t for t, _ in walk(GFM.parse(md_code(text)))]
        assert [t.content for t in tokens if t.type == "code_inline"] == [text]
    cell = walk(GFM.parse(f"| {md_code('a|b', in_table=True)} |\n|---|\n"))
    assert [t.content for t, _ in cell if t.type == "code_inline"] == ["a|b"]
    body = "a\n```\n````\n~~~\nb"
    fences = [t for t in GFM.parse(md_fence(body) + "\n\nafter\n") if t.type == "fence"]
    assert [f.content for f in fences] == [body + "\n"]


def test_clip_and_scrub():
    long = "x" * 5_000
    assert len(clip(long)) <= LINE_CHARS and clip(long).endswith("more characters)")
    assert clip(clip(long)) == clip(long) and clip("short") == "short"
    data = scrub({"k\u202e": ("a\x1bcb", [long]), "n": 1.5})
    assert data == {"k": ("ab", [clip(long)]), "n": 1.5}


# -- size caps ------------------------------------------------------------------------------


def assert_capped(analysis: Analysis) -> None:
    markdown, text, report = (render(analysis, fmt) for fmt in ("md", "text", "json"))
    assert len(markdown) < 65_536 and len(text) < 1_000_000 and len(report) < 1_000_000
    assert "### What to change" in markdown and "what to change" in text
    assert json.loads(report)["fixes"]
    assert markdown_problems(markdown) == []


def test_one_40_mb_line_gives_small_reports(tmp_path):
    log = tmp_path / "huge-line.log"
    log.write_text("RuntimeError: CUDA out of memory. " + "x" * 40_000_000 + "\n")
    analysis = forensics.analyze(log)
    assert analysis.root_cause is not None and analysis.root_cause.finding.signature == "cuda-oom"
    assert_capped(analysis)
    assert "more characters)" in render(analysis, "md")


def test_many_distinct_error_lines_give_small_reports(tmp_path):
    log = tmp_path / "many.log"
    lines = []
    for rank in range(3000):
        lines += [f"[rank{rank}]: RuntimeError: CUDA error: an illegal memory access was "
                  f"encountered at step {rank} " + "y" * 300,
                  f"[rank{rank}]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate "
                  f"{rank}.00 MiB. GPU {rank % 8} has a total capacity of 79.25 GiB."]
    log.write_text("\n".join(lines) + "\n")
    assert_capped(forensics.analyze(log))


def test_the_markdown_cap_cuts_between_blocks_and_keeps_the_fixes():
    """At every size from the verdict and fixes up to the whole report: within the limit, the
    fixes kept, every fence closed, the cut note last and outside code."""
    analysis = forensics.analyze(SAMPLES / "cuda-oom-nccl-timeout.log")
    whole = render_markdown(analysis)
    assert "report cut" not in whole
    for limit in range(1_600, len(whole) + 1, 97):
        text = render_markdown(analysis, limit)
        assert len(text) <= limit
        assert "### What to change" in text and markdown_problems(text) == []
        tokens = GFM.parse(text)
        if text != whole:
            last = tokens[-2]  # the inline of the last paragraph
            assert last.type == "inline" and last.content.startswith("*(report cut at"), limit
        assert all(t.content.count("report cut") == 0 for t in tokens if t.type == "fence")
    assert MAX_CHARS < 65_536


def test_cut_blocks_closes_a_text_fence_and_drops_a_cut_chart():
    text = "### T\n\n```text\nline 1\nline 2\nline 3\n```\n\n```mermaid\nchart 1\nchart 2\n```"
    assert cut_blocks(text, 28) == "### T\n\n```text\nline 1\n```"
    assert cut_blocks(text, len(text) - 4) == "### T\n\n```text\nline 1\nline 2\nline 3\n```"
    assert cut_blocks(text, len(text)) == text
    table = "### R\n\n| a |\n|---|\n| 1 |\n| 2 |"
    assert cut_blocks(table, 20) == "### R"
