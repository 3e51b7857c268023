"""benchmarks/gpu_suite.py: refuses at once without CUDA; ``--smoke`` runs every section on the CPU.

The smoke run checks the script (every section runs and reports its figures), not the figures:
toy models on a shared CPU say nothing about a GPU.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuronattack.attack.settings import ARMS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.py"


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_stops_with_one_line(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "x.json")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("error: the GPU suite needs a CUDA GPU")
    assert "--smoke" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.json").exists()


def test_smoke_runs_every_section_and_writes_one_json(suite, tmp_path, monkeypatch):
    monkeypatch.setenv("NEURONATTACK_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "suite.json"
    report = suite.run(suite.SECTIONS, smoke=True, device="cpu", out=out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["schema"] == "neuronattack.gpu-suite/1" and report["smoke"] is True
    sections = report["sections"]
    assert list(sections) == list(suite.SECTIONS)
    for name, result in sections.items():
        assert "error" not in result, f"{name}: {result.get('traceback')}"
    assert set(sections["analysis"]["rows"]) == {"official-parity-tiny fp32",
                                                 "official-parity-tiny bf16"}
    for row in sections["analysis"]["rows"].values():
        assert row["blocks"] == [0, 1, 2] and row["plain_seconds"] > 0
    assert sections["text"]["max_abs_difference"] < 1e-5
    assert 0 < sections["omp"]["mean_nonzeros"] <= sections["omp"]["nonzeros"]
    assert set(sections["render"]["rows"]) == {"batch 1", "batch 2"}
    assert min(sections["render"]["parameters"].values()) > 0
    assert sections["campaign"]["images"] == len(ARMS)  # 1 pair x every arm x 1 image
    for name in ("analysis", "text", "render", "campaign"):
        assert math.isfinite(sections[name]["ratio"]) and sections[name]["ratio"] > 0
