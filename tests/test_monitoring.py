"""The ops files are valid and speak about metrics the service really exports."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import urllib.request
from pathlib import Path

from tests.helpers.service import MakeHelpline, free_port
from tests.peers.sipp import run_sipp_async

MONITORING = Path(__file__).parents[1] / "monitoring"
METRIC = re.compile(r"\bhelpline_[a-z_]+")


def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["promtool", *args], input=stdin, capture_output=True, timeout=60, cwd=MONITORING
    )


def test_prometheus_config_and_alert_rules_are_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"SUCCESS: 14 rules found" in result.stdout


def test_alert_rules_fire_as_intended() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


async def test_alerts_and_dashboard_use_exported_metrics(make_helpline: MakeHelpline) -> None:
    port = free_port()
    async with make_helpline(metrics_port=port) as helpline:
        (await run_sipp_async("uac_options", helpline.target)).assert_ok()
        (
            await run_sipp_async(
                "uac_expect_status", helpline.target, local_ip="127.0.0.2",
                keys={"expect_status": "407"},
            )
        ).assert_ok()  # fmt: skip
        scrape = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read()
        )
    lint = promtool("check", "metrics", stdin=scrape)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    exported = {
        line.split()[2] for line in scrape.decode().splitlines() if line.startswith("# TYPE")
    }
    # counters are exported as NAME with samples NAME_total, histograms with three series
    suffixes = ("_total", "_bucket", "_sum", "_count")
    names = exported | {f"{n}{suffix}" for n in exported for suffix in suffixes}
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set(METRIC.findall((MONITORING / "alerts.yml").read_text() + " ".join(exprs)))
    assert used and used <= names, used - names
    # a call from outside the trunk is challenged (it could be a volunteer's handset)
    assert 'helpline_sip_invites_refused_total{reason="challenged"} 1.0' in scrape.decode()
