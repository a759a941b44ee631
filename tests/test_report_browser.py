"""report.html and results.html in a real browser: headless Chromium opens pages made from real converts
of a tiny seeded model, takes a full-page screenshot, and the test checks that every chart has a
non-empty box with drawn marks (measured in the page, and as pixels in the screenshot), that chart
text is selectable, that the page logs no console error and fetches nothing but itself.

Without Chromium the tests skip and say how to install it; .ci/run and scripts/setup_env.sh install
Debian's `chromium` as root.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cdp_pipe import Browser, find_browser
from PIL import Image

from edgeport.cli import main
from edgeport.sweep import table

from fixture_models import TinyCNN, image_data, seeded

pytestmark = pytest.mark.slow

WIDTH = 1200
MEASURE = """[...document.querySelectorAll('svg.chart')].map(s => {
  const r = s.getBoundingClientRect(), b = s.getBBox();
  const drawn = [...s.querySelectorAll('circle,rect,path')].filter(m => {
    const k = m.getBBox(); return k.width > 0 || k.height > 0; });
  return {chart: s.dataset.chart, x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height,
          content_w: b.width, content_h: b.height, marks: drawn.length, texts: s.querySelectorAll('text').length};
})"""
# Select the first label of each chart as a user would (a DOM range): SVG text that is real text
# selects as its string; text drawn as paths would select nothing.
SELECT = """[...document.querySelectorAll('svg.chart')].map(s => {
  const t = [...s.querySelectorAll('text')].find(t => t.textContent.trim());
  const range = document.createRange(); range.selectNodeContents(t);
  const sel = getSelection(); sel.removeAllRanges(); sel.addRange(range);
  return [t.textContent, sel.toString()];
})"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = find_browser()
    if binary is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run and scripts/setup_env.sh "
                    "install it when run as root)")
    d = tmp_path_factory.mktemp("chromium")
    b = Browser(binary, d / "profile", d / "browser.log")
    yield b
    b.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """report.html of a real `--quant auto` convert and of a real `--diagnose` convert, and a sweep
    results.html whose cells carry the auto run's real candidate figures."""
    d = tmp_path_factory.mktemp("reports")
    torch.save(seeded(TinyCNN()).state_dict(), d / "tiny.pt")
    np.savez(d / "calib.npz", x=image_data(48))
    np.savez(d / "val.npz", x=image_data(32, seed=1))
    common = ["convert", str(d / "tiny.pt"), "--model-class", "fixture_models:TinyCNN", "--profile", "raspberry-pi-4",
              "--calib", str(d / "calib.npz"), "--val", str(d / "val.npz"), "--runs", "8", "--quiet"]
    for name, extra in (("auto", ["--quant", "auto"]), ("diagnose", ["--quant", "int8", "--diagnose"])):
        assert main([*common, *extra, "--output", str(d / name)]) in (0, 1)  # 1: built, over a budget: still drawn
    auto = json.loads((d / "auto" / "report.json").read_text())
    assert auto["quant_auto"]["candidates"] and auto["latency"]["host"]["samples_ms"]
    cells = [{"id": f"tiny-{c['mode']}", "model": "tiny", "profile": "raspberry-pi-4", "mode": c["mode"],
              "status": "passed" if c.get("meets_task") else "failed",
              "summary": {"size_bytes": c["size_bytes"], "simulated_p50_ms": c["simulated_p50_ms"],
                          "host_p50_ms": c["host_p50_ms"]}}
             for c in auto["quant_auto"]["candidates"] if c.get("size_bytes")]
    (d / "sweep").mkdir()
    table.write(d / "sweep", {"counts": f"{len(cells)} cells", "executor": "local", "plan": "from the auto run",
                              "cells": cells})
    return {"auto": d / "auto" / "report.html", "diagnose": d / "diagnose" / "report.html",
            "sweep": d / "sweep" / "results.html"}


def test_console_errors_are_seen(browser):
    """The check below can fail: a page that logs an error and throws is caught."""
    session = browser.open_page("data:text/html,<p>x</p><script>console.error('planted');throw new Error('boom')</script>")
    errors = browser.console_errors(session)
    assert any("planted" in e for e in errors) and any("boom" in e for e in errors), errors


@pytest.mark.parametrize("page,expected", [
    ("auto", {"pareto", "host-latency", "op-types", "top-ops"}),
    ("diagnose", {"sensitivity", "host-latency", "op-types", "top-ops"}),
    ("sweep", {"sweep-model"}),
])
def test_charts_render(browser, pages, tmp_path, page, expected):
    session = browser.open_page(pages[page].as_uri(), width=WIDTH)
    boxes = browser.evaluate(session, MEASURE)
    assert expected <= {b["chart"] for b in boxes}, boxes
    for b in boxes:
        assert b["w"] > 50 and b["h"] > 50 and b["content_w"] > 0 and b["content_h"] > 0, b
        assert b["marks"] >= 1 and b["texts"] >= 3, b
    for text, selected in browser.evaluate(session, SELECT):
        assert selected == text and selected.strip(), (text, selected)
    browser.evaluate(session, "getSelection().removeAllRanges()")

    png = browser.screenshot(session)
    (tmp_path / f"{page}.png").write_bytes(png)
    shot = Image.open(io.BytesIO(png)).convert("RGB")
    assert shot.width == WIDTH and shot.height >= max(b["y"] + b["h"] for b in boxes)
    for b in boxes:  # the chart's pixels: drawn in several colours, not a blank box
        crop = np.asarray(shot.crop((int(b["x"]), int(b["y"]), int(b["x"] + b["w"]), int(b["y"] + b["h"]))))
        inked = (crop < 230).any(axis=2).mean()
        colours = len(np.unique(crop.reshape(-1, 3), axis=0))
        assert inked > 0.01 and colours > 20, (b["chart"], inked, colours)

    assert browser.console_errors(session) == []
    assert {url for url in browser.requests(session)} == {pages[page].as_uri()}  # nothing fetched: self-contained
