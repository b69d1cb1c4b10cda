"""Secrets never reach a report."""

from __future__ import annotations

import pytest

from forensics.redact import MASK, redact_text

SECRETS = [
    "hf_" + "abcdefghijklmnopqrstuvwxyzABCDEF12",
    "ghp_" + "A" * 36,
    "AKIA" + "ABCDEFGHIJKLMNOP",
    "sk-" + "proj-" + "x" * 30,
]


@pytest.mark.parametrize("secret", SECRETS)
def test_tokens_are_masked(secret):
    assert redact_text(f"using token {secret} now") == f"using token {MASK} now"


def test_assignments_urls_and_bearer():
    assert "hunter22" not in redact_text("password=hunter22 ok")
    assert redact_text("git clone https://bob:s3cretpw@github.com/x/y") == \
        f"git clone https://bob:{MASK}@github.com/x/y"
    assert "abcdef123456" not in redact_text("Authorization: Bearer abcdef123456789")
    assert "0123456789abcdef0123456789abcdef01234567" not in redact_text(
        "wandb login 0123456789abcdef0123456789abcdef01234567")


def test_ordinary_log_text_is_unchanged():
    line = "[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."
    assert redact_text(line) == line
