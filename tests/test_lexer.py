"""Prefix stripping, ANSI codes and carriage-return redraws."""

from __future__ import annotations

import pytest

from forensics.lines.lexer import parse_prefixes, segments
from forensics.model import Level


def test_rank_and_glog_prefixes():
    seg = parse_prefixes("[rank1]:[E307 05:30:20.036611330 ProcessGroupNCCL.cpp:744] [Rank 1] "
                         "Some NCCL operations have failed")
    assert seg.body == "Some NCCL operations have failed"
    assert seg.who.rank == 1
    assert seg.who.time == "307 05:30:20.036611330"


def test_traceback_indentation_survives_the_prefix():
    seg = parse_prefixes('[rank2]:   File "train.py", line 3, in <module>')
    assert seg.body == '  File "train.py", line 3, in <module>'
    assert seg.who.rank == 2


def test_torchrun_tee_prefix_gives_local_rank():
    seg = parse_prefixes("[default3]:torch.OutOfMemoryError: CUDA out of memory.")
    assert seg.who.local_rank == 3
    assert seg.body.startswith("torch.OutOfMemoryError")


def test_axolotl_record_fields():
    seg = parse_prefixes("[2024-01-19 08:19:49,149] [DEBUG] [axolotl.load_tokenizer:185] "
                         "[PID:6552] [RANK:4] EOS: 32000 / <|im_end|>")
    assert seg.body == "EOS: 32000 / <|im_end|>"
    assert (seg.who.pid, seg.who.local_rank, seg.who.time) == (6552, 4, "2024-01-19 08:19:49,149")


def test_nccl_debug_prefix_gives_host_and_pid():
    seg = parse_prefixes("node-1:185:1027 [7] NCCL INFO [Service thread] Connection closed")
    assert (seg.who.host, seg.who.pid) == ("node-1", 185)
    assert seg.body == "NCCL INFO [Service thread] Connection closed"


def test_ray_actor_prefix():
    seg = parse_prefixes("(RayWorkerWrapper pid=92234, ip=172.19.24.110) [rank1]:[E1224 "
                         "13:23:05.483840160 ProcessGroupNCCL.cpp:542] [Rank 12] Collective failed")
    assert (seg.who.pid, seg.who.host, seg.who.rank) == (92234, "172.19.24.110", 1)
    assert seg.body == "Collective failed"


def test_ansi_codes_are_removed():
    (seg,) = segments("\x1b[31m[2025-10-01 12:00:00,123] [ERROR] [axolotl.train] boom\x1b[39m\n")
    assert seg.body == "boom"


def test_carriage_return_redraws_and_glued_bars_are_split():
    raw = ("\r  0%|          | 0/5 [00:00<?, ?it/s]\r" + " " * 20 + "\r{'loss': 1.2, 'epoch': 0.6}"
           "\r 60%|######    | 3/5 [00:00<00:00, 98.51it/s][rank0]: ValueError: bad")
    bodies = [s.body for s in segments(raw)]
    assert "{'loss': 1.2, 'epoch': 0.6}" in bodies
    assert "ValueError: bad" in bodies


def test_plain_line_is_untouched():
    (seg,) = segments("RuntimeError: something broke")
    assert seg.body == seg.text == "RuntimeError: something broke"


def test_glog_and_kernel_stamps():
    seg = parse_prefixes("E0301 12:41:09.004000 4000 torch/distributed/elastic/agent/server/"
                         "api.py:869] failed (exitcode: 1) local_rank: 0")
    assert (seg.who.time, seg.who.pid) == ("0301 12:41:09.004000", 4000)
    assert seg.body.startswith("failed (exitcode: 1)")
    kernel = parse_prefixes("[74889.644138] NVRM: Xid (PCI:0000:02:00): 79, GPU has fallen off")
    assert kernel.who.time == "74889.644138"
    assert kernel.body.startswith("NVRM: Xid")


def test_deepspeed_rank_field():
    seg = parse_prefixes("[2023-11-07 01:55:23,711] [INFO] [logging.py:96:log_dist] [Rank 3] "
                         "step=10, skipped=4")
    assert (seg.who.rank, seg.body) == (3, "step=10, skipped=4")


@pytest.mark.parametrize(("line", "level"), [
    ("I0301 12:41:09.004000 4000 torch/x.py:869] Starting elastic_operator", Level.INFO),
    ("[2024-01-19 08:19:49,149] [WARNING] [axolotl.utils:12] [PID:6552] slow tokenizer",
     Level.WARNING),
    ("node-1:185:1027 [7] NCCL INFO NET/Plugin : dlerror=libnccl-net.so", Level.INFO),
    ("node-1:185:1027 [7] NCCL WARN Connect to 10.0.0.2<56789> failed", Level.WARNING),
    ("04/01/2024 19:13:45 - WARNING - __main__ - Process rank: 0", Level.WARNING),
    ("INFO 03-01 12:00:01 [api_server.py:1090] Starting vLLM API server", Level.INFO),
    ("[WARNING:swift] Please install the package: `pip install \"transformers>=4.48\" -U`.",
     Level.WARNING),
    ("[INFO:swift] rank: -1, local_rank: -1, world_size: 1", Level.INFO),
    ("INFO - trl.extras.vllm_client - Server is not up yet. Retrying in 2.0 seconds...",
     Level.INFO),
    ("INFO:trl.extras.vllm_client:Server is not up yet. Retrying in 2.0 seconds...", Level.INFO),
    ("wandb: ERROR api_key not configured (no-tty)", Level.ERROR),
    ("/x/y.py:46: UserWarning: [Errno 28] No space left on device.", Level.WARNING),
    ("RuntimeError: CUDA error: an illegal memory access was encountered", Level.UNMARKED),
    ("INFO is what this variable holds", Level.UNMARKED),
])
def test_the_level_a_line_states(line, level):
    assert segments(line)[-1].level == level
