"""Paste damage: every catalog example, hard-wrapped at a terminal width, boxed like a rich
traceback, or cut off before its end, still gives its signature; and logs that were not
pasted are left alone."""

from __future__ import annotations

import pytest

from forensics.catalog import CUT_MATCH_CHARS, literal_phrases, load_catalog, open_ended
from forensics.inputs.sources import Source
from forensics.lines.linepass import compile_plan, line_pass
from forensics.lines.paste import normalize, wrap_width

CATALOG = load_catalog()
PLAN = compile_plan(CATALOG)
CUT_AT = 0.6
EXAMPLES = [pytest.param(s, example, id=f"{s.id}-{i}")
            for s in CATALOG.signatures for i, example in enumerate(s.examples)
            if "\n" not in example]


def signatures_in(text: str) -> set[str]:
    lines = line_pass(Source("<paste>", data=text.encode("utf-8")), PLAN)
    return {m.signature for token in lines.tokens for m in token.matches}


def hard_wrap(text: str, width: int) -> str:
    """What a terminal copy gives: rows of exactly `width` characters, cut mid-word."""
    return "\n".join(text[i:i + width] for i in range(0, len(text), width)) + "\n"


def rich_box(text: str, width: int = 100) -> str:
    """The text inside a rich traceback panel, wrapped at the panel's inner width."""
    inner = width - 4
    rows = [text[i:i + inner] for i in range(0, len(text), inner)]
    top = "╭" + " Traceback (most recent call last) ".center(width - 2, "─") + "╮"
    bottom = "╰" + "─" * (width - 2) + "╯"
    return "\n".join([top, *("│ " + row.ljust(inner) + " │" for row in rows), bottom]) + "\n"


@pytest.mark.parametrize("width", [80, 120, 200])
@pytest.mark.parametrize(("signature", "example"), EXAMPLES)
def test_hard_wrapped_example_keeps_its_signature(signature, example, width):
    assert signature.id in signatures_in(hard_wrap(example, width))


@pytest.mark.parametrize(("signature", "example"), EXAMPLES)
def test_boxed_example_keeps_its_signature(signature, example):
    assert signature.id in signatures_in(rich_box(example))


def _cut_keeps_the_words(signature, example: str, cut: int) -> bool:
    """Whether one of the signature's regexes still has CUT_MATCH_CHARS of its match before
    the cut, with some of its own words, and the cut falls inside those words rather than
    inside a wildcard (a number, a path, a time): otherwise the words that tell this failure
    apart are past the cut, and no reader could name it. A cut after a digit or a bracket
    is not read as a cut at all: that is how many whole lines end (a letter or an
    underscore is: a word or an identifier broken off)."""
    last = example[:cut].rstrip()[-1:]
    if not (last.isalpha() or last == "_"):
        return False
    for pattern in signature.patterns:
        found = pattern.search(example)
        if found is None:
            continue
        kept = example[found.start():cut]
        words = [w for w in literal_phrases(pattern.pattern) if len(w.strip()) >= 4]
        if (len(kept) >= CUT_MATCH_CHARS
                and not open_ended(pattern, example[:cut], found.start())
                and any(w in kept or any(kept.endswith(w[:n]) for n in range(6, len(w)))
                        for w in words)):
            return True
    return False


@pytest.mark.parametrize(("signature", "example"), EXAMPLES)
def test_example_cut_short_keeps_its_signature(signature, example):
    cut = int(len(example) * CUT_AT)
    if signature.id not in signatures_in(example[:cut] + "\n"):
        assert not _cut_keeps_the_words(signature, example, cut)


def test_most_examples_cut_short_still_name_their_failure():
    """Measured: 288 of 380 single-line examples; the rest lose their deciding words."""
    found = sum(s.id in signatures_in(e[: int(len(e) * CUT_AT)] + "\n")
                for s in CATALOG.signatures for e in s.examples if "\n" not in e)
    assert found / len(EXAMPLES) >= 0.72


@pytest.mark.parametrize(("last_line", "signature"), [
    ("[rank3]: KeyboardIn", "user-interrupt"),
    ("RuntimeError: No CUDA GP", "no-cuda-device"),
    ("sacct: 41003.0|OUT_OF_M", "slurm-oom-kill"),
    ("Segmentati", "segfault"),
])
def test_a_keyword_broken_off_mid_word_names_its_signature(last_line, signature):
    assert signature in signatures_in("step 10 done\n" + last_line + "\n")


@pytest.mark.parametrize("last_line", [
    "Training completed",           # a whole line that ends in a whole word
    "the node was running low on",  # a keyword's words, but no word broken off
    "Kil",                          # too little of it to tell
    "model.layers.0.mlp.gate_proj.weight: Memory",
])
def test_a_whole_last_line_is_not_completed_into_a_failure(last_line):
    assert signatures_in("step 10 done\n" + last_line + "\n") == set()


def test_wrapped_rows_are_joined_and_line_numbers_kept():
    text = hard_wrap("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.50 GiB. "
                     "GPU 3 has a total capacity of 79.15 GiB of which 1.2 GiB is free", 80)
    text += "next line\n"
    joined = normalize(text.encode(), small=True).decode().split("\n")
    assert joined[0].endswith("1.2 GiB is free") and joined[1] == "" and joined[2] == "next line"


def test_a_log_file_with_long_lines_is_not_unwrapped():
    rows = ["x" * 80, "y" * 300, "short"]
    assert wrap_width(rows) is None
    assert normalize("\n".join(rows).encode(), small=False) == "\n".join(rows).encode()


def test_a_full_width_row_before_a_new_record_is_not_joined():
    text = "a" * 80 + "\n[2024-01-01 10:00:00,000] [INFO] next record\n"
    assert normalize(text.encode(), small=True).decode() == text


def test_interleaved_ranks_on_one_line_are_read_apart():
    text = ("[rank0]: step 10 done[rank1]: torch.OutOfMemoryError: CUDA out of memory. "
            "Tried to allocate 2.00 GiB.\n")
    lines = line_pass(Source("<paste>", data=text.encode()), PLAN)
    oom = [t for t in lines.tokens if any(m.signature == "cuda-oom" for m in t.matches)]
    assert oom and oom[0].who.rank == 1


def test_a_colour_code_after_the_cut_line_does_not_hide_it():
    """A last line that is blank once its colour codes are removed is not the last line:
    the cut message above it still names its failure (found by the property test)."""
    assert "bf16-numpy" in signatures_in("TypeError: Got unsuppor\n\x1b[31m")


def test_rows_a_program_ended_are_not_a_terminal_wrap():
    """A row ending in a carriage return (CRLF), or one line repeated at the longest width,
    is how a program wrote its log, not a screen wrapped at that width: nothing is joined
    (both found by the property tests)."""
    crlf = ("{'loss': 0.8791, 'grad_norm': 0.4272, 'learning_rate': 2.857e-06, 'epoch': 1.0}\r\n"
            "    raise ChildFailedError(\n")
    assert len(crlf.split("\n")[0]) == 80
    assert normalize(crlf.encode(), small=True) == crlf.encode()
    repeated = "W0616 00:40:12.118000 4026234 torch/distributed/run.py:793] \n" * 3 + "next\n"
    assert wrap_width(repeated.split("\n")) is None


def test_rows_with_colour_codes_are_not_a_terminal_wrap():
    """A screen copy holds no escape codes (the terminal rendered them): rows that do were
    captured raw, so a row 200 characters long with its codes is no wrap at 200 columns
    (a NeMo metrics line joined with the next, found by the property tests)."""
    first = ("\x1b[31mTraining epoch 0, iteration 44/999 | lr: 0.0003 | global_batch_size: "
             "512 | global_step: 44 | reduced_train_loss: 3.4 | train_step_timing in s: 4.211 "
             "| grad_norm: 1.2 | consumed_samples: 22528\x1b[0m")
    assert len(first) == 200
    text = first + "\nTraining epoch 0, iteration 152/999 | lr: 0.0003\n"
    assert normalize(text.encode(), small=True) == text.encode()


def test_a_whole_printed_dict_of_full_width_is_a_line_of_its_own():
    """A metrics dict exactly 80 characters long, then a launcher line cut at its start:
    the dict is whole on its row, so no wrap joins them (found by the property tests)."""
    text = ("{'loss': 1.2673, 'grad_norm': 0.8883, 'learning_rate': 0.0001509, 'epoch': 0.27}\n"
            "] exits with return code = -9\n")
    assert len(text.split("\n")[0]) == 80
    assert normalize(text.encode(), small=True) == text.encode()


def test_an_indented_row_under_a_full_row_is_a_line_of_its_own():
    """A metrics dict that happens to be 80 characters long, then a traceback's source
    line: not a wrapped row and its continuation (found by the property tests)."""
    text = ("{'loss': 1.7857, 'grad_norm': 1.0289, 'learning_rate': 0.0001167, 'epoch': 0.03}\n"
            "    raise ChildFailedError(\n")
    assert len(text.split("\n")[0]) == 80
    assert normalize(text.encode(), small=True) == text.encode()
