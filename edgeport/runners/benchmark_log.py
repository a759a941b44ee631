"""Parse TFLite `benchmark_model` output into raw numbers, on the host (DESIGN principle 3).

The tool's text has drifted over the years (see tests/fixtures/benchmark_model/SOURCES.md): 2019 builds
print only the `count=` summaries and a tab-separated op table with a `[start]` column; 2020 builds add
"Inference timings in us" and "Peak memory footprint"; 2021+ builds say "Memory footprint delta" and
prefix lines with `INFO:`; 2022+ builds add the periodic peak-memory line and drop `[start]` from the
op tables, which they align with spaces. Android logcat and other loggers prepend timestamps. The
parser therefore keys on phrases and on each table's own header row, never on fixed columns.

benchmark_model prints avg/std/min/max of its runs, not each run. `to_latency_stats` says so openly:
with no per-run timings the p50 it reports IS the average (`extra["p50_is_avg"] = True`) and p90 is
unknown (null), because inventing a distribution from avg/std would be a guess dressed up as data.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeport.types import LatencyStats

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf"
_NUM_RE = re.compile(rf"^(?:{_NUM})$", re.IGNORECASE)
_PAIR_RE = re.compile(rf"(\w+)=({_NUM})", re.IGNORECASE)
_COUNT_RE = re.compile(r"\bcount=\d+")
# Prefixes that loggers put before the tool's own text; stripped in this order, each at most once.
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\^\[\[[0-9;]*[A-Za-z]")
_LOGCAT_RE = re.compile(r"^\d{2}-\d{2}\s+\d{2}:\d{2}:\d{2}\.\d+\s+\d+\s+\d+\s+([VDIWEF])\s+[^:]*?:\s?")
_LOGCAT_BRIEF_RE = re.compile(r"^([VDIWEF])/[^(:]+(?:\(\s*\d+\))?:\s?")
_ISO_TIME_RE = re.compile(
    r"^\[?\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\]?:?\s*(?:[\w.-]+\[\d+:\d+\]\s*)?"
)
_GLOG_RE = re.compile(r"^([IWEF])\d{4}\s+\d{2}:\d{2}:\d+\.\d+\s+\d+\s+[^\]]+\]\s?")
_CLOCK_RE = re.compile(r"^\[?\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\]?\s+")
_NATIVE_RE = re.compile(r"^native\s*:\s*\S+:\d+\s?")
_LEVEL_RE = re.compile(r"^(INFO|WARNING|WARN|ERROR|VERBOSE|DEBUG|FATAL)\s*:\s?")
_LETTER_LEVEL = {"V": "VERBOSE", "D": "DEBUG", "I": "INFO", "W": "WARNING", "E": "ERROR", "F": "FATAL"}
_SECTION_RE = re.compile(r"^=+\s*(.+?)\s*=+$")
_SECTIONS = {"run order": "run_order", "top by computation time": "top_by_time",
             "top by memory use": "top_by_memory", "summary by node type": "by_node_type"}
_PARAM_RE = re.compile(r"^([^:\[\]=]{2,60}?)\s*:\s*\[(.*)\]\s*$")
_ERROR_TEXT_RE = re.compile(r"(?i)^(?:error|fatal)\b|\bfailed\b|\bdidn't find op\b")
_SUMMARY_LINE_RE = re.compile(r"^count=\d")


@dataclass(frozen=True)
class RunSummary:
    """One `count=… first=… curr=… min=… max=… avg=… std=…` line; times in microseconds."""

    count: int
    first_us: float | None = None
    curr_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    avg_us: float | None = None
    std_us: float | None = None


@dataclass(frozen=True)
class OpRow:
    """A row of the Run Order / Top by ... tables (one node of the graph); times in ms."""

    node_type: str
    first_ms: float
    avg_ms: float
    percent: float
    cdf_percent: float
    mem_kb: float
    times_called: int | None
    name: str
    start_ms: float | None = None  # only builds before ~2022 print the [start] column


@dataclass(frozen=True)
class NodeTypeRow:
    """A row of "Summary by node type": all nodes of one op type together; times in ms per run."""

    node_type: str
    count: int
    avg_ms: float
    percent: float
    cdf_percent: float
    mem_kb: float
    times_called: int | None = None  # missing in the oldest builds


@dataclass(frozen=True)
class OpProfile:
    """The op-profiling tables of one phase (initialization or the regular runs)."""

    run_order: tuple[OpRow, ...] = ()
    top_by_time: tuple[OpRow, ...] = ()
    top_by_memory: tuple[OpRow, ...] = ()
    by_node_type: tuple[NodeTypeRow, ...] = ()
    nodes_executed: int | None = None
    total: RunSummary | None = None  # "Timings (microseconds): count=…" of the profiled runs


@dataclass(frozen=True)
class BenchmarkLog:
    """Everything numeric that benchmark_model printed; None where the build did not print it."""

    warmup: RunSummary | None = None
    inference: RunSummary | None = None
    init_ms: float | None = None
    first_inference_ms: float | None = None
    warmup_avg_ms: float | None = None
    inference_avg_ms: float | None = None
    init_session_ms: float | None = None
    model_size_mb: float | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    peak_memory_mb: float | None = None
    run_profile: OpProfile | None = None
    init_profile: OpProfile | None = None
    params: dict[str, str] = field(default_factory=dict)
    delegate_lines: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def completed(self) -> bool:
        """True when the timed (non-warm-up) runs finished and reported their summary."""
        return self.inference is not None and self.inference.count > 0 and self.inference.avg_us is not None

    @property
    def last_error(self) -> str | None:
        return self.errors[-1] if self.errors else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------ line level


def clean_line(raw: str) -> tuple[str, str]:
    """Strip logger prefixes (logcat, timestamps, `INFO:`) and return (level, text)."""
    text = _ANSI_RE.sub("", raw.rstrip("\r\n")).replace("\r", "")
    level = ""
    for pattern in (_LOGCAT_RE, _LOGCAT_BRIEF_RE, _GLOG_RE):
        m = pattern.match(text)
        if m:
            level = _LETTER_LEVEL.get(m.group(1), "")
            text = text[m.end():]
            break
    else:
        for pattern in (_ISO_TIME_RE, _CLOCK_RE):
            m = pattern.match(text)
            if m:
                text = text[m.end():]
                break
    m = _NATIVE_RE.match(text)
    if m:
        text = text[m.end():]
    m = _LEVEL_RE.match(text.lstrip())
    if m:
        level = "WARNING" if m.group(1) == "WARN" else m.group(1)
        text = text.lstrip()[m.end():]
    return level, text


def parse_summary(text: str) -> RunSummary | None:
    """`count=50 first=… curr=… min=… max=… avg=… std=…` (any subset after count) → RunSummary."""
    m = _COUNT_RE.search(text)
    if not m:
        return None
    pairs = {k.lower(): float(v) for k, v in _PAIR_RE.findall(text[m.start():])}
    return RunSummary(
        count=int(pairs["count"]),
        first_us=pairs.get("first"),
        curr_us=pairs.get("curr"),
        min_us=pairs.get("min"),
        max_us=pairs.get("max"),
        avg_us=pairs.get("avg"),
        std_us=pairs.get("std"),
    )


def _num(text: str) -> float:
    return float(text.rstrip("%"))


def _after(text: str, label: str) -> float | None:
    m = re.search(re.escape(label) + rf"\s*({_NUM})", text, re.IGNORECASE)
    return float(m.group(1)) if m else None


# ----------------------------------------------------------------------------------- op tables

_KIND_BY_COLUMN = {"node type": "text", "start": "num", "first": "num", "avg ms": "num", "%": "pct",
                   "cdf%": "pct", "avg %": "pct", "cdf %": "pct", "mem kb": "num", "times called": "int",
                   "count": "int", "name": "rest"}
_KIND_RE = {"num": rf"(?:{_NUM})", "pct": rf"(?:{_NUM})%", "int": r"\d+"}


class _Table:
    """Row matcher built from a table's own header (`[node type] [first] [avg ms] ...`)."""

    def __init__(self, header: str) -> None:
        self.columns = [c.strip().lower() for c in re.findall(r"\[([^\]]+)\]", header)]
        middle = [c for c in self.columns[1:] if c != "name"]
        if any(c not in _KIND_BY_COLUMN for c in middle):
            raise ValueError(f"unknown column in {self.columns}")
        nums = r"\s+".join(f"({_KIND_RE[_KIND_BY_COLUMN[c]]})" for c in middle)
        name = r"(?:\s+(.*?))?" if self.columns[-1] == "name" else ""
        # Node types can contain spaces ("Convolution (NHWC, QC8) GEMM"), so the type is the shortest
        # prefix that is followed by exactly the numeric columns the header promises.
        self.row_re = re.compile(rf"^\s*(.+?)\s+{nums}{name}\s*$", re.IGNORECASE)
        self.middle = middle

    def match(self, text: str) -> dict[str, Any] | None:
        m = self.row_re.match(text)
        if not m:
            return None
        groups = m.groups()
        row: dict[str, Any] = {"node type": groups[0].strip()}
        for col, value in zip(self.middle, groups[1:1 + len(self.middle)], strict=True):
            row[col] = int(value) if _KIND_BY_COLUMN[col] == "int" else _num(value)
        if self.columns[-1] == "name":
            row["name"] = (groups[-1] or "").strip()
        return row


def _op_row(row: dict[str, Any]) -> OpRow:
    return OpRow(
        node_type=row["node type"], first_ms=row.get("first", float("nan")), avg_ms=row["avg ms"],
        percent=row["%"], cdf_percent=row["cdf%"], mem_kb=row.get("mem kb", 0.0),
        times_called=row.get("times called"), name=row.get("name", ""), start_ms=row.get("start"),
    )


def _type_row(row: dict[str, Any]) -> NodeTypeRow:
    return NodeTypeRow(
        node_type=row["node type"], count=int(row["count"]), avg_ms=row["avg ms"], percent=row["avg %"],
        cdf_percent=row["cdf %"], mem_kb=row.get("mem kb", 0.0), times_called=row.get("times called"),
    )


class _ProfileBuilder:
    def __init__(self) -> None:
        self.tables: dict[str, list[Any]] = {k: [] for k in _SECTIONS.values()}
        self.nodes_executed: int | None = None
        self.total: RunSummary | None = None

    def build(self) -> OpProfile:
        return OpProfile(
            run_order=tuple(self.tables["run_order"]), top_by_time=tuple(self.tables["top_by_time"]),
            top_by_memory=tuple(self.tables["top_by_memory"]), by_node_type=tuple(self.tables["by_node_type"]),
            nodes_executed=self.nodes_executed, total=self.total,
        )


# ---------------------------------------------------------------------------------------- parse


def parse_benchmark_log(text: str) -> BenchmarkLog:
    """Parse benchmark_model's merged stdout+stderr (any known vintage, CRLF or LF)."""
    values: dict[str, Any] = {}
    summaries: list[RunSummary] = []
    params: dict[str, str] = {}
    delegates: list[str] = []
    errors: list[str] = []
    profiles: dict[str, _ProfileBuilder] = {}
    phase: str | None = None  # "init" / "run": which profile block the next tables belong to
    section: str | None = None
    table: _Table | None = None
    saw_timings_line = False

    for raw in text.replace("\r\n", "\n").split("\n"):
        level, line = clean_line(raw)
        stripped = line.strip()
        lowered = stripped.lower()
        if not stripped:
            if table is not None:  # a blank line closes a table
                section, table = None, None
            continue
        if "profiling info for benchmark initialization" in lowered:
            phase, section, table = "init", None, None
            continue
        if "profiling info for regular benchmark runs" in lowered:
            phase, section, table = "run", None, None
            continue
        m = _SECTION_RE.match(stripped)
        if m and m.group(1).lower() in _SECTIONS:
            phase = phase or "run"  # builds before 2020 print the run tables with no block title
            section, table = _SECTIONS[m.group(1).lower()], None
            profiles.setdefault(phase, _ProfileBuilder())
            continue
        if section and table is None and stripped.startswith("["):
            try:
                table = _Table(stripped)
            except ValueError:
                section = None
            continue
        if section and table is not None:
            row = table.match(line)
            if row is not None:
                builder = profiles[phase or "run"]
                builder.tables[section].append(_type_row(row) if section == "by_node_type" else _op_row(row))
                continue
            section, table = None, None  # a line that is not a row ends the table
        if lowered.startswith("number of nodes executed:"):
            profiles.setdefault(phase or "run", _ProfileBuilder()).nodes_executed = int(_after(stripped, ":") or 0)
            continue
        if lowered.startswith("timings (microseconds):"):
            profiles.setdefault(phase or "run", _ProfileBuilder()).total = parse_summary(stripped)
            continue
        if lowered.startswith("memory (bytes):") or lowered.endswith("nodes observed"):
            continue
        if "inference timings in us" in lowered:
            saw_timings_line = True
            _inference_timings(stripped, values)
            continue
        if _SUMMARY_LINE_RE.match(stripped):
            summary = parse_summary(stripped)
            if summary is not None:
                summaries.append(summary)
            continue
        _scalar_line(stripped, lowered, values, params, delegates)
        if level in ("ERROR", "FATAL") or _ERROR_TEXT_RE.search(stripped):
            errors.append(f"{level}: {stripped}" if level in ("ERROR", "FATAL") else stripped)

    warmup, inference = _assign_summaries(summaries, saw_timings_line)
    return BenchmarkLog(
        warmup=warmup, inference=inference, params=params, delegate_lines=tuple(delegates), errors=tuple(errors),
        run_profile=profiles["run"].build() if "run" in profiles else None,
        init_profile=profiles["init"].build() if "init" in profiles else None,
        **values,
    )


def _inference_timings(text: str, values: dict[str, Any]) -> None:
    # New: "Inference timings in us: Init: 855, First inference: 49060, Warmup (avg): 34825.1, Inference (avg): 33209.4"
    # 2019: "Average inference timings in us: Warmup: 27917.4, Init: 21528106, no stats: 23313.5"
    body = text.split(":", 1)[1] if ":" in text else text
    fields = {}
    for part in body.split(","):
        if ":" in part:
            key, _, value = part.rpartition(":")
            if _NUM_RE.match(value.strip()):
                fields[key.strip().lower()] = float(value.strip()) / 1000.0
    values["init_ms"] = fields.pop("init", None)
    values["first_inference_ms"] = fields.pop("first inference", None)
    values["warmup_avg_ms"] = fields.pop("warmup (avg)", fields.pop("warmup", None))
    inference = fields.pop("inference (avg)", None)
    if inference is None and fields:  # the 2019 line names the regular runs after the benchmark
        inference = list(fields.values())[-1]
    values["inference_avg_ms"] = inference


def _scalar_line(text: str, lowered: str, values: dict[str, Any], params: dict[str, str], delegates: list[str]) -> None:
    if lowered.startswith("initialized session in"):
        values["init_session_ms"] = _after(text, "session in")
    elif "input model file size (mb)" in lowered:
        values["model_size_mb"] = _after(text, "(MB):")
    elif "peak memory footprint (mb) via periodic monitoring" in lowered:
        values["peak_memory_mb"] = _after(text, "monitoring:")
    elif "memory footprint" in lowered and "init=" in lowered:
        # "Peak memory footprint (MB): init=0 overall=12.8672" (2020) or
        # "Memory footprint delta from the start of the tool (MB): init=… overall=…" (2021+)
        values["memory_init_mb"] = _after(text, "init=")
        values["memory_overall_mb"] = _after(text, "overall=")
    elif m := _PARAM_RE.match(text):  # "Num threads: [4]" echo of the flags the tool ran with
        params.setdefault(m.group(1).strip(), m.group(2))
    elif "delegate" in lowered:
        delegates.append(text)


def _assign_summaries(summaries: list[RunSummary], saw_timings_line: bool) -> tuple[RunSummary | None, RunSummary | None]:
    """benchmark_model prints the warm-up summary, then the timed runs' summary, in that order."""
    if len(summaries) >= 2:
        return summaries[0], summaries[-1]
    if len(summaries) == 1:
        # One summary alone is the warm-up of a run that died before its timed runs, unless the
        # final "Inference timings" line proves the timed runs finished (warm-up disabled).
        return (None, summaries[0]) if saw_timings_line else (summaries[0], None)
    return None, None


# ------------------------------------------------------------------------------- LatencyStats


def to_latency_stats(
    log: BenchmarkLog,
    *,
    source: str,
    threads: int | None,
    samples_ms: list[float] | tuple[float, ...] | None = None,
    extra: dict[str, Any] | None = None,
) -> LatencyStats:
    """LatencyStats from a parsed log: true percentiles only from per-run timings, else the average."""
    if not log.completed or log.inference is None or log.inference.avg_us is None:
        raise ValueError("benchmark_model did not report its timed runs")
    inf = log.inference
    details: dict[str, Any] = {
        "runs_reported": inf.count,
        "mean_ms": inf.avg_us / 1000.0,
        "std_ms": _ms(inf.std_us),
        "min_ms": _ms(inf.min_us),
        "max_ms": _ms(inf.max_us),
        "first_ms": _ms(inf.first_us),
        "init_ms": log.init_ms if log.init_ms is not None else log.init_session_ms,
        "warmup_avg_ms": log.warmup_avg_ms if log.warmup_avg_ms is not None else _ms(log.warmup.avg_us if log.warmup else None),
        "peak_memory_mb": log.peak_memory_mb,
        "memory_footprint_mb": {"init": log.memory_init_mb, "overall": log.memory_overall_mb},
        "op_profile": op_profile_summary(log.run_profile),
    }
    if samples_ms:
        details["p50_is_avg"] = False
        return LatencyStats.from_samples(list(samples_ms), source, threads=threads, extra={**details, **(extra or {})})
    # No per-run timings: one sample equal to the average keeps p50 honest about what it is, while the
    # overrides below make report.json say runs=count and p90=null instead of pretending to know them.
    details.update({
        "p50_is_avg": True,
        "p90_ms": None,
        "runs": inf.count,
        "latency_note": "benchmark_model reports avg/std only, not per-run times: p50_ms is the average, p90_ms unknown",
    })
    return LatencyStats.from_samples([inf.avg_us / 1000.0], source, threads=threads, extra={**details, **(extra or {})})


def op_profile_summary(profile: OpProfile | None, top: int = 10) -> dict[str, Any] | None:
    """A report-sized view of the op profile: per type, and the slowest nodes."""
    if profile is None:
        return None
    nodes = profile.top_by_time or tuple(sorted(profile.run_order, key=lambda r: r.avg_ms, reverse=True))
    return {
        "nodes_executed": profile.nodes_executed,
        "by_node_type": [asdict(r) for r in profile.by_node_type],
        "top_nodes": [{"node_type": r.node_type, "name": r.name, "avg_ms": r.avg_ms, "percent": r.percent}
                      for r in nodes[:top]],
    }


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1000.0
