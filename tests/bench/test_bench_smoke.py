"""Every benchmark at smoke size (`python -m bench --smoke`), so none of them rots: each must
run to the end and write its result file with the agreed shape and its plot. Whether the
targets are met is what the full-size `make bench` measures, never asserted here."""
import json
import subprocess
import sys

from bench import BENCHES
from common.config import ROOT

TARGET_KEYS = {"name", "goal", "measured", "unit", "met"}
# a goal not met may say what limited it (bench api: process, broker or database)
OPTIONAL_KEYS = {"saturated"}


def test_every_bench_runs_at_smoke_size_and_writes_its_results(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-6000:]
    for name in BENCHES:
        path = tmp_path / f"{name}.json"
        assert path.exists(), f"{name} wrote no result:\n{done.stderr[-4000:]}"
        result = json.loads(path.read_text())
        assert result["bench"] == name
        assert not result.get("error"), result.get("traceback") or result["error"]
        assert isinstance(result["commit"], str) and result["commit"]
        assert isinstance(result["params"], dict) and result["params"]["smoke"] is True
        assert isinstance(result["targets"], list) and result["targets"], result
        for line in result["targets"]:
            assert TARGET_KEYS <= set(line) <= TARGET_KEYS | OPTIONAL_KEYS, line
            if "saturated" in line:
                assert line["met"] is False and isinstance(line["saturated"], str) and line["saturated"], line
            assert isinstance(line["name"], str) and isinstance(line["unit"], str)
            assert line["met"] in (True, False, None), line
            assert line["measured"] is None or isinstance(line["measured"], (int, float)), line
            if line["goal"] != "report":
                assert line["met"] is not None, line
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
