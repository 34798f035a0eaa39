"""`benchmarks/gpu_suite.py` on the CPU: its reduced set runs, writes the JSON and prints the Markdown table."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import ROOT


@pytest.mark.slow
def test_gpu_suite_cpu_mode_writes_json_and_a_markdown_table(tmp_path):
    out = tmp_path / "suite.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--out", str(out),
                           "--rounds", "1", "--device", "cpu"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    (config,) = result["configs"]
    assert (config["model"], config["batch"]) == ("small_cnn", 4) and config["reference_images_per_s"] > 0
    assert [row["mode"] for row in config["modes"]] == ["fp32", "fp32 channels-last"]
    assert all(row["images_per_s"] > 0 and row["step_over_floor"] > 0 and row["peak_mib"] is None
               for row in config["modes"])
    assert [row["attack"] for row in result["eval"]] == ["PGD-20 (every image, all 20 steps)"]
    assert "AutoAttack timed on CUDA only: on the CPU it takes minutes" in result["notes"]
    lines = proc.stdout.splitlines()
    header = "| model | batch | mode | images/s | vs reference | step / compute floor | peak memory (MiB) |"
    table = lines[lines.index(header):]
    assert table[1] == "|---|---|---|---|---|---|---|"
    assert table[2].startswith("| small_cnn | 4 | reference (official DAFA step) | ") and "| 1.00× |" in table[2]
    assert table[3].startswith("| small_cnn | 4 | fp32 | ") and table[3].endswith("| — |")
    assert f"| {config['modes'][0]['vs_reference']:.2f}× |" in table[3]
    assert "| PGD-20 (every image, all 20 steps) | small_cnn | 4 | " in proc.stdout
