"""benchmark_model output parsing, offline, against fixtures that reproduce published formats.

Every expected number below was read off the fixture by hand (see fixtures/benchmark_model/SOURCES.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeport.runners.benchmark_log import clean_line, parse_benchmark_log, parse_summary, to_latency_stats

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"


def _load(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode("utf-8")


def test_every_fixture_is_documented_and_parses() -> None:
    sources = (FIXTURES / "SOURCES.md").read_text()
    names = sorted(p.name for p in FIXTURES.glob("*.txt"))
    assert len(names) >= 5
    for name in names:
        assert name in sources, f"{name} has no entry in SOURCES.md"
        log = parse_benchmark_log(_load(name))
        assert log.completed == (name != "tflite_failed_old_binary.txt")


def test_2019_desktop_format_with_start_column() -> None:
    log = parse_benchmark_log(_load("tflite_2019_linux_x86.txt"))
    assert log.warmup is not None and log.warmup.count == 187 and log.warmup.avg_us == 2673.41
    inf = log.inference
    assert inf is not None
    assert (inf.count, inf.first_us, inf.curr_us, inf.min_us, inf.max_us, inf.avg_us, inf.std_us) == (
        376, 2655, 2649, 2601, 2893, 2659.87, 38)
    assert log.init_session_ms == pytest.approx(2.104)
    # "Average inference timings in us: Warmup: 2673.41, Init: 2104, no stats: 2659.87"
    assert log.init_ms == pytest.approx(2.104)
    assert log.warmup_avg_ms == pytest.approx(2.67341)
    assert log.inference_avg_ms == pytest.approx(2.65987)
    assert log.memory_overall_mb is None and log.peak_memory_mb is None
    assert log.params["Num threads"] == "1" and log.params["Use nnapi"] == "0"
    assert log.init_profile is None
    prof = log.run_profile
    assert prof is not None and prof.nodes_executed == 7 and len(prof.run_order) == 7
    first, last = prof.run_order[0], prof.run_order[-1]
    assert (first.node_type, first.start_ms, first.first_ms, first.avg_ms) == ("CONV_2D", 0.0, 0.702, 0.612)
    assert (first.percent, first.cdf_percent, first.mem_kb, first.times_called) == (23.502, 23.502, 0.0, 1)
    assert first.name == "[MobilenetV1/MobilenetV1/Conv2d_0/Relu6]"
    assert (last.node_type, last.start_ms, last.cdf_percent) == ("SOFTMAX", 2.593, 100.0)
    assert prof.top_by_time[0].name == "[MobilenetV1/Logits/Conv2d_1c_1x1/BiasAdd]"
    assert prof.top_by_time[0].avg_ms == 0.803
    conv = prof.by_node_type[0]
    # 0.612 + 0.731 + 0.803 = 2.146 ms of 2.604 ms in all = 82.412 %
    assert (conv.node_type, conv.count, conv.avg_ms, conv.percent, conv.times_called) == ("CONV_2D", 3, 2.146, 82.412, 3)
    assert [r.node_type for r in prof.by_node_type] == ["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "SOFTMAX", "RESHAPE"]
    assert prof.total is not None and prof.total.count == 376 and prof.total.avg_us == 2655.02
    assert log.errors == ()


def test_2020_android_crlf_format_with_init_profile_and_peak_memory() -> None:
    raw = _load("tflite_2020_android_adb.txt")
    assert "\r\n" in raw  # recorded through adb's pty: CRLF line ends
    log = parse_benchmark_log(raw)
    assert log.warmup is not None and (log.warmup.count, log.warmup.avg_us, log.warmup.std_us) == (14, 35410.6, 4412)
    assert log.inference is not None and (log.inference.count, log.inference.avg_us) == (50, 33390.2)
    assert (log.init_ms, log.first_inference_ms) == (pytest.approx(0.912), pytest.approx(51.23))
    assert log.inference_avg_ms == pytest.approx(33.3902)
    assert (log.memory_init_mb, log.memory_overall_mb) == (0.0, 13.0117)  # "Peak memory footprint (MB): init=0 overall=13.0117"
    assert log.model_size_mb == 0.004512
    assert log.params["#threads used for CPU inference"] == "4"
    init = log.init_profile
    assert init is not None and [(r.node_type, r.avg_ms, r.name) for r in init.run_order] == [
        ("AllocateTensors", 0.843, "AllocateTensors/0")]
    assert init.total is not None and (init.total.count, init.total.curr_us) == (1, 843)
    run = log.run_profile
    assert run is not None and run.nodes_executed == 4
    assert [r.node_type for r in run.run_order] == ["CONV_2D", "CONV_2D", "CONV_2D", "DEPTH_TO_SPACE"]
    assert run.run_order[3].start_ms == 33.107 and run.run_order[3].name == "[Identity]"
    # 14.904 + 10.317 + 7.886 = 33.107 ms; / (33.107 + 0.251) = 99.248 %
    assert [(r.node_type, r.count, r.avg_ms, r.percent) for r in run.by_node_type] == [
        ("CONV_2D", 3, 33.107, 99.248), ("DEPTH_TO_SPACE", 1, 0.251, 0.752)]
    assert run.total is not None and run.total.std_us == 1480


def test_2022_logcat_prefixes_gpu_delegate_and_no_start_column() -> None:
    log = parse_benchmark_log(_load("tflite_2022_android_logcat.txt"))
    assert log.warmup is not None and (log.warmup.count, log.warmup.avg_us) == (63, 7921.33)
    assert log.inference is not None and (log.inference.count, log.inference.avg_us, log.inference.max_us) == (146, 6846.52, 8012)
    assert log.init_ms == pytest.approx(66.714) and log.init_session_ms == pytest.approx(66.714)
    assert (log.memory_init_mb, log.memory_overall_mb, log.model_size_mb) == (27.3047, 29.1445, 13.9786)
    assert log.params["Use gpu"] == "1" and log.params["Use xnnpack"] == "0"
    assert any("completely executed by the delegate" in line for line in log.delegate_lines)
    init = log.init_profile
    assert init is not None
    assert [(r.node_type, r.first_ms, r.avg_ms, r.mem_kb, r.times_called, r.start_ms) for r in init.run_order] == [
        ("ModifyGraphWithDelegate", 61.204, 61.204, 1208.0, 1, None), ("AllocateTensors", 2.911, 1.462, 0.0, 2, None)]
    assert [(r.node_type, r.avg_ms, r.times_called) for r in init.by_node_type] == [
        ("ModifyGraphWithDelegate", 61.204, 1), ("AllocateTensors", 2.924, 2)]
    run = log.run_profile
    assert run is not None and len(run.run_order) == 1
    gpu = run.run_order[0]
    assert (gpu.node_type, gpu.avg_ms, gpu.percent, gpu.name) == ("TfLiteGpuDelegateV2", 6.482, 100.0, "[MobilenetV2/Predictions/Reshape_1]:64")
    assert run.total is not None and run.total.avg_us == 6482.2


def test_2023_info_prefix_xnnpack_rows_with_spaces_and_periodic_peak() -> None:
    log = parse_benchmark_log(_load("tflite_2023_linux_info.txt"))
    assert log.warmup is not None and log.warmup.count == 417  # the line starts with a stray "^[[A"
    assert log.inference is not None and (log.inference.count, log.inference.avg_us, log.inference.max_us) == (858, 1163.9, 1350)
    assert log.peak_memory_mb == 11.3906
    assert (log.memory_init_mb, log.memory_overall_mb) == (4.19531, 5.01953)
    assert log.delegate_lines == ("Created TensorFlow Lite XNNPACK delegate for CPU.",)
    run = log.run_profile
    assert run is not None and run.nodes_executed == 7 and len(run.run_order) == 7
    fc = run.run_order[0]
    assert (fc.node_type, fc.first_ms, fc.avg_ms, fc.percent, fc.times_called) == (
        "Fully Connected (NC, F32) GEMM", 0.412, 0.377, 63.682, 1)
    assert fc.name == "Delegate/Fully Connected (NC, F32) GEMM:0" and fc.start_ms is None
    sigmoid = run.run_order[1]
    assert (sigmoid.node_type, sigmoid.times_called, sigmoid.percent) == ("Sigmoid (NC, F32)", 3, 12.162)
    assert run.run_order[5].name == "[model/lstm/strided_slice, model/lstm/strided_slice_1]:5"
    # two GEMM nodes: 0.377 + 0.058 = 0.435 ms
    assert (run.by_node_type[0].node_type, run.by_node_type[0].count, run.by_node_type[0].avg_ms) == (
        "Fully Connected (NC, F32) GEMM", 2, 0.435)
    assert run.by_node_type[0].percent == 73.480
    assert log.init_profile is not None and log.init_profile.run_order[0].mem_kb == 2744.0


def test_failed_run_reports_errors_and_no_inference() -> None:
    log = parse_benchmark_log(_load("tflite_failed_old_binary.txt"))
    assert not log.completed and log.inference is None and log.run_profile is None
    assert log.errors[0].startswith("ERROR: Didn't find op for builtin opcode 'FULLY_CONNECTED' version '11'")
    assert log.last_error == "Benchmarking failed."
    with pytest.raises(ValueError):
        to_latency_stats(log, source="adb://X", threads=2)


def test_latency_stats_without_per_run_times_says_p50_is_the_average() -> None:
    log = parse_benchmark_log(_load("tflite_2020_android_adb.txt"))
    stats = to_latency_stats(log, source="adb://R58M", threads=4, extra={"device": {"serial": "R58M"}})
    assert stats.samples_ms == (pytest.approx(33.3902),)
    assert stats.p50_ms == pytest.approx(33.3902)
    data = stats.to_dict()
    assert data["p50_is_avg"] is True and data["p90_ms"] is None and data["runs"] == 50
    assert data["std_ms"] == pytest.approx(0.402) and data["min_ms"] == pytest.approx(32.71)
    assert data["target"] == "adb://R58M" and data["device"] == {"serial": "R58M"}
    assert data["memory_footprint_mb"] == {"init": 0.0, "overall": 13.0117}
    assert data["op_profile"]["by_node_type"][0]["node_type"] == "CONV_2D"
    assert "avg" in data["latency_note"]


def test_latency_stats_with_per_run_times_uses_them() -> None:
    log = parse_benchmark_log(_load("tflite_2023_linux_info.txt"))
    stats = to_latency_stats(log, source="adb://X", threads=4, samples_ms=[1.0, 2.0, 3.0, 4.0])
    assert stats.p50_ms == 2.5 and stats.to_dict()["p50_is_avg"] is False and stats.to_dict()["runs"] == 4


@pytest.mark.parametrize(
    ("raw", "level", "text"),
    [
        ("INFO: count=5 avg=3", "INFO", "count=5 avg=3"),
        ("05-30 13:04:39.021 25935 25935 I tflite  : Num threads: [4]", "INFO", "Num threads: [4]"),
        ("E/tflite  ( 4669): Failed to apply delegate", "ERROR", "Failed to apply delegate"),
        ("2024-05-02 10:11:12.123456: ERROR: Failed to invoke", "ERROR", "Failed to invoke"),
        ("I0000 00:00:1795806521.637032   10321 benchmark_model.cc:31] STARTING!", "INFO", "STARTING!"),
        ("native : stat_summarizer.cc:85 \t  CONV_2D", "", "\t  CONV_2D"),
        ("\x1b[2K\rINFO: Loaded model m.tflite\r", "INFO", "Loaded model m.tflite"),
    ],
)
def test_logger_prefixes_are_stripped(raw: str, level: str, text: str) -> None:
    assert clean_line(raw) == (level, text)


def test_summary_with_exponent_and_single_run() -> None:
    s = parse_summary("count=5 first=1310742 curr=1298221 min=1290113 max=1310742 avg=1.29994e+06 std=7431")
    assert s is not None and s.avg_us == 1299940.0 and s.max_us == 1310742
    one = parse_summary("count=1 curr=843")
    assert one is not None and (one.count, one.curr_us, one.avg_us) == (1, 843, None)


def test_warmup_only_is_not_mistaken_for_the_timed_runs() -> None:
    text = ("Running benchmark for at least 1 iterations and at least 0.5 seconds\n"
            "count=3 first=900 curr=800 min=800 max=900 avg=850 std=50\n\nERROR: Failed to invoke the interpreter\n")
    log = parse_benchmark_log(text)
    assert log.warmup is not None and log.inference is None and not log.completed
    assert log.last_error == "ERROR: Failed to invoke the interpreter"
    # with warm-up disabled the only summary is the timed one, proven by the final timings line
    done = parse_benchmark_log("count=10 first=5 curr=5 min=5 max=6 avg=5.2 std=0\n"
                               "Inference timings in us: Init: 10, First inference: 5, Warmup (avg): 0, Inference (avg): 5.2\n")
    assert done.completed and done.inference is not None and done.inference.count == 10


def test_summary_table_without_times_called_column() -> None:
    # the oldest stat_summarizer layout has no [times called] column; parsing follows each header row
    text = "\n".join([
        "count=50 first=10 curr=10 min=9 max=11 avg=10.0 std=1",
        "============================== Summary by node type ==============================",
        "\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]",
        "\t                 CONV_2D\t        2\t     0.008\t    80.000%\t    80.000%\t     0.000",
        "\t                    ADD\t        1\t     0.002\t    20.000%\t   100.000%\t     0.000",
        "",
    ])
    log = parse_benchmark_log(text)
    assert log.run_profile is not None
    assert [(r.node_type, r.count, r.avg_ms, r.times_called) for r in log.run_profile.by_node_type] == [
        ("CONV_2D", 2, 0.008, None), ("ADD", 1, 0.002, None)]
