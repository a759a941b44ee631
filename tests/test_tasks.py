"""Task metrics (edgeport/tasks): parsing, detection from the outputs, the metrics themselves, and planted
faults on real float outputs of the task fixtures that the task metric catches while SNR still passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeport.errors import InputError
from edgeport.profiles import load_profile
from edgeport.tasks import TaskLabels, TaskSpec, detect_task, detection, parse_task, score
from edgeport.tasks import ctc as ctc_metrics
from edgeport.types import TensorSpec
from edgeport.validate.metrics import compare_output
from edgeport.zoo import task_models as tm
from edgeport.zoo.recurrent import Crnn, make_lines

BUDGETS = load_profile("raspberry-pi-4").budgets
SNR_FLOOR = BUDGETS.min_snr_db


def _forward(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _spec(ref: np.ndarray) -> list[TensorSpec]:
    return [TensorSpec("out", tuple(ref.shape), "float32")]


def _snr(ref: np.ndarray, got: np.ndarray) -> float:
    return compare_output("out", ref, got).snr_db


def _verdicts(ref: np.ndarray, got: np.ndarray, spec: TaskSpec) -> tuple[bool, bool]:
    """(passed judged by SNR alone, passed judged by the task) under the Pi 4 profile's accuracy floors."""
    from edgeport.profiles import Budgets
    from edgeport.validate.judge import Evidence, judge

    floors = Budgets(min_snr_db=SNR_FLOOR, **{k: getattr(BUDGETS, k) for k in
                                             ("min_ctc_identical", "min_detect_recall", "min_embed_cosine", "min_segment_miou")})
    snr = _snr(ref, got)
    by_snr = judge(Evidence(mode="int8", size_bytes=1000, snr_db=snr), floors)["passed"]
    task = score(spec, [ref], [got]).to_dict()
    return by_snr, judge(Evidence(mode="int8", size_bytes=1000, snr_db=snr, task=task), floors)["passed"]


@pytest.fixture(scope="module")
def crnn_out() -> np.ndarray:
    model = Crnn()
    model.load_state_dict(torch.load(tm.ZOO / "crnn.pt", weights_only=True))
    return _forward(model.eval(), make_lines(100, 2)[0])


# -- parsing ---------------------------------------------------------------------------------------

def test_parse_task_takes_options_and_refuses_typos_with_one_line():
    spec = parse_task("ctc:blank=10,layout=tnc")
    assert (spec.name, spec.options, spec.detected) == ("ctc", {"blank": "10", "layout": "tnc"}, False)
    assert parse_task("detect:layout=yolov8,iou=0.5").options == {"layout": "yolov8", "iou": "0.5"}
    for bad, words in (("ocr", "unknown task"), ("ctc:blnk=0", "not an option of ctc"), ("ctc:blank=-1", "class index"),
                       ("detect:layout=ssd", "one of yolo"), ("detect:iou=2", "(0, 1]"), ("embed:x=1", "embed takes: none")):
        with pytest.raises(InputError) as err:
            parse_task(bad)
        assert words in err.value.one_line(), (bad, err.value.one_line())


# -- detection from the outputs --------------------------------------------------------------------

def test_each_fixture_is_detected_as_its_task_with_a_reason(crnn_out):
    ctc = detect_task(_spec(crnn_out), [crnn_out], None)
    assert (ctc.name, ctc.options["blank"]) == ("ctc", "0") and "CTC" in ctc.reason
    det = _forward(tm.seeded(tm.YoloStyleDetector()), tm.images(4, 64))
    assert detect_task(_spec(det), [det], None).options == {"layout": "yolo"}
    yolov8 = np.transpose(det[..., [0, 1, 2, 3, 5, 6, 7]], (0, 2, 1))
    assert detect_task(_spec(yolov8), [yolov8], None).options == {"layout": "yolov8"}
    emb = _forward(tm.seeded(tm.EmbeddingNet()), tm.images(4))
    assert detect_task(_spec(emb), [emb], None).name == "embed"
    seg = _forward(tm.trained_segmenter(), tm.scenes(4)[0])
    assert detect_task(_spec(seg), [seg], np.zeros((4, 32, 32), np.int64)).name == "segment"
    found = detect_task(_spec(seg), [seg], None)
    assert (found.name, found.options, found.detected) == ("segment", {"layout": "nchw"}, True)
    assert "4 class scores per pixel" in found.reason


def test_classifiers_stay_classifiers():
    logits = np.random.default_rng(0).normal(size=(20, 10)).astype(np.float32)
    assert detect_task(_spec(logits), [logits], np.arange(20) % 10).name == "classify"
    assert detect_task(_spec(logits), [logits], None).name == "classify"  # not unit-norm: not an embedding


def test_a_boxes_and_scores_pair_is_a_detector_in_either_order():
    boxes, scores = np.zeros((2, 300, 4), np.float32), np.zeros((2, 300, 5), np.float32)
    specs = [TensorSpec("s", (2, 300, 5), "float32"), TensorSpec("b", (2, 300, 4), "float32")]
    assert detect_task(specs, [scores, boxes], None).options == {"layout": "pairs"}


# -- the metrics -----------------------------------------------------------------------------------

def test_greedy_ctc_collapses_repeats_and_drops_the_blank():
    steps = np.eye(4)[[1, 1, 0, 1, 2, 2, 0, 0, 3]][None]
    assert ctc_metrics.greedy(steps, blank=0) == [(1, 1, 2, 3)]
    assert ctc_metrics.greedy(steps, blank=3) == [(1, 0, 1, 2, 0)]
    assert ctc_metrics.cer([(1, 2, 3)], [(1, 3)]) == pytest.approx(1 / 3)


def test_ctc_against_label_sequences(crnn_out):
    truth = np.full((len(crnn_out), 12), -1)
    decoded = ctc_metrics.greedy(crnn_out, 0)
    for i, seq in enumerate(decoded):
        truth[i, :len(seq)] = seq
    found = score(TaskSpec("ctc"), [crnn_out], [crnn_out], truth)
    assert found.value == 1.0 and found.details["cer_vs_labels"] == 0.0 and found.details["exact_vs_labels"] == 1.0


def test_nms_keeps_the_best_of_overlapping_boxes_per_class():
    dets = np.array([[0, 0, 10, 10, 0.9, 0], [1, 1, 11, 11, 0.8, 0], [1, 1, 11, 11, 0.7, 1], [50, 50, 60, 60, 0.6, 0]])
    kept = detection.nms(dets, 0.45)
    assert sorted(map(tuple, kept[:, 4:])) == [(0.6, 0), (0.7, 1), (0.9, 0)]


def test_map50_is_one_for_perfect_detections_and_lower_for_a_miss():
    truth = [np.array([[0, 0, 10, 10, 0], [20, 20, 30, 30, 1]], float)]
    perfect = [np.array([[0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.8, 1]], float)]
    assert detection.average_precision_50(truth, perfect) == pytest.approx(1.0)
    assert detection.average_precision_50(truth, [perfect[0][:1]]) == pytest.approx(0.5)


def test_detect_with_box_labels_reports_map50():
    det = _forward(tm.seeded(tm.YoloStyleDetector()), tm.images(4, 64))
    ref = [detection.nms(d, 0.45) for d in detection.decode([det], "yolo", 0.25)]
    labels = np.full((4, 64, 5), -1.0)
    for i, r in enumerate(ref):
        labels[i, :len(r)] = r[:, [0, 1, 2, 3, 5]]
    found = score(TaskSpec("detect", {"layout": "yolo"}), [det], [det], labels)
    assert found.value == 1.0 and found.details["map50_vs_labels"] == pytest.approx(1.0)


# -- planted faults: the task metric fails where the profile's SNR budget still passes --------------

@pytest.fixture(scope="module")
def faults():
    from edgeport.zoo.task_faults import plant

    return {f.name: f for f in plant(SNR_FLOOR)}


@pytest.mark.parametrize("name", ["crnn_scores_swapped", "detector_box_offset", "detector_scores_swapped",
                                  "embedding_channel_zeroed", "segmenter_edges_swapped"])
def test_a_planted_fault_passes_on_snr_and_fails_on_the_task(faults, name):
    f = faults[name]
    spec = parse_task(f.task)
    assert _snr(f.reference, f.faulted) >= SNR_FLOOR
    found = score(spec, [f.reference], [f.faulted], f.labels)
    assert found.value < BUDGETS.task_minimum(spec.name), found
    assert _verdicts(f.reference, f.faulted, spec) == (True, False)


def test_what_each_fault_breaks(faults):
    ctc = score(parse_task("ctc"), [faults["crnn_scores_swapped"].reference], [faults["crnn_scores_swapped"].faulted])
    assert ctc.details["cer_vs_float"] > 0 and len(ctc.details["differing"]) == 3
    swap = faults["detector_scores_swapped"]
    assert score(parse_task(swap.task), [swap.reference], [swap.faulted]).details["precision"] < BUDGETS.min_detect_recall
    seg = faults["segmenter_edges_swapped"]
    # The trained segmenter matches the true masks, so mIoU vs labels is meaningful, and the fault lowers it.
    clean = score(parse_task("segment"), [seg.reference], [seg.reference], seg.labels)
    broken = score(parse_task("segment"), [seg.reference], [seg.faulted], seg.labels)
    assert clean.details["miou_vs_labels"] > 0.95 > broken.details["miou_vs_labels"]


def test_default_floors_match_the_profile_defaults():
    from edgeport.profiles import Budgets
    from edgeport.tasks import DEFAULT_MIN

    b = Budgets()
    assert DEFAULT_MIN["classify"] == load_profile("raspberry-pi-4").budgets.min_top1_agreement
    for task in ("ctc", "detect", "embed", "segment"):
        assert DEFAULT_MIN[task] == b.task_minimum(task), task


# -- task labels in the data .npz ------------------------------------------------------------------

def test_text_labels_load_with_their_charset_and_score_the_crnn(tmp_path, crnn_out):
    from edgeport.data.calibration import load_data as load

    x, texts = make_lines(100, 2)
    path = tmp_path / "val.npz"
    np.savez(path, x=x, text=np.array(texts), charset=np.array("-0123456789"))
    ds = load(str(path), [TensorSpec("x", (1, 1, 16, 64), "float32")], max_samples=60)
    assert ds.labels is None and len(ds.task_labels) == 60 and ds.task_labels.charset[1] == "0"
    found = score(TaskSpec("ctc"), [crnn_out[:60]], [crnn_out[:60]], ds.task_labels)
    # The trained CRNN reads its own lines: its strings vs the labels are the reference figure.
    assert found.details["cer_vs_labels"] == found.details["reference_cer_vs_labels"] < 0.05
    got = crnn_out[:60].copy()
    got[:, :, [1, 2]] = got[:, :, [2, 1]]  # "0" and "1" swapped
    worse = score(TaskSpec("ctc"), [crnn_out[:60]], [got], ds.task_labels)
    assert worse.details["cer_vs_labels"] > found.details["cer_vs_labels"]
    assert {"float", "quantized", "sample"} <= set(worse.details["differing"][0])
    assert worse.details["differing"][0]["float"].isdigit()  # rendered through the charset
    assert ds.take(np.arange(5)).task_labels.text.tolist() == texts[:5]


@pytest.mark.parametrize(("arrays", "words"), [
    ({"text": np.array(["12"] * 8)}, "need a 'charset'"),
    ({"boxes": np.zeros((8, 3, 4))}, "(N, M, 5)"),
    ({"tokens": np.zeros((7, 3), np.int64)}, "7 'tokens' labels for 8 samples"),
    ({"charset": np.array("-01")}, "no 'text'"),
])
def test_bad_task_labels_are_one_line_errors(tmp_path, arrays, words):
    from edgeport.data.calibration import load_data as load

    path = tmp_path / "bad.npz"
    np.savez(path, x=np.zeros((8, 4), np.float32), **arrays)
    with pytest.raises(InputError) as err:
        load(str(path), [TensorSpec("x", (1, 4), "float32")])
    assert words in err.value.one_line()


def test_an_input_named_like_a_label_key_stays_data(tmp_path):
    from edgeport.data.calibration import load_data as load

    path = tmp_path / "two.npz"
    np.savez(path, x=np.zeros((8, 4), np.float32), boxes=np.ones((8, 2), np.float32))
    ds = load(str(path), [TensorSpec("x", (1, 4), "float32"), TensorSpec("boxes", (1, 2), "float32")])
    assert ds.task_labels is None and set(ds.inputs) == {"x", "boxes"}


def test_charset_tokens_longer_than_one_character_encode_longest_first():
    from edgeport.tasks.labels import encode

    assert encode("thethe", ("-", "t", "h", "e", "th")) == (4, 3, 4, 3)
    assert encode("t?", ("-", "t")) == (1, -2)  # an unknown character still counts as an error


# -- detect_task: one case per rule, and the ambiguous ones -----------------------------------------

def _guess(shape, labels=None, name="out", seed=0, unit=False, softmax=False):
    y = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    if unit:
        y /= np.linalg.norm(y, axis=-1, keepdims=True)
    if softmax:
        y = np.exp(y) / np.exp(y).sum(-1, keepdims=True)
    return detect_task([TensorSpec(name, shape, "float32")], [y], labels)


def test_each_detect_rule_and_what_its_reason_says():
    from edgeport.tasks.labels import TaskLabels

    digits = _guess((16, 10), np.arange(16) % 10)
    assert digits.name == "classify" and "class id per sample" in digits.reason
    assert _guess((16, 64), None, unit=True).name == "embed"
    named = _guess((16, 128), None, name="embedding")
    assert named.name == "embed" and "named like an embedding" in named.reason
    assert _guess((16, 128), None, name="embedding", softmax=True).name == "classify"  # probabilities are classes
    steps = np.random.default_rng(0).normal(size=(4, 20, 12))
    steps[..., 5] += 3  # class 5 wins most steps: the blank
    ctc = detect_task(_spec(steps), [steps], None)
    assert (ctc.name, ctc.options["blank"]) == ("ctc", "5") and "class 5 best on" in ctc.reason
    tokens = detect_task(_spec(steps), [steps], TaskLabels(tokens=np.full((4, 3), 1)))
    assert tokens.name == "ctc" and "token labels" in tokens.reason
    assert _guess((2, 300, 4 + 1 + 2)).options == {"layout": "yolo"}
    assert _guess((2, 4 + 2, 300)).options == {"layout": "yolov8"}
    assert _guess((2, 16, 16, 5)).options == {"layout": "nhwc"}
    masks = _guess((2, 6, 16, 16), TaskLabels(masks=np.zeros((2, 16, 16), np.int64)))
    assert masks.name == "segment" and "class map" in masks.reason


def test_ambiguous_outputs_fall_back_and_say_which_task_to_pass():
    wide = _guess((16, 1000))  # a 1000-class head without labels looks like a 1000-d embedding
    assert wide.name == "classify" and "--task embed" in wide.reason
    rgb = _guess((2, 3, 32, 32))  # an image-to-image model, or a 3-class segmenter
    assert rgb.name == "raw" and "--task segment" in rgb.reason
    hidden = _guess((4, 20, 64))  # per-step features with no blank: not a recognizer
    assert hidden.name == "raw" and "--task ctc" in hidden.reason
    few_boxes = _guess((2, 50, 7))
    assert few_boxes.name == "raw"
    scalar = _guess((16, 1))
    assert scalar.name == "raw" and "no task signature" in scalar.reason


def test_the_digits_demo_is_still_a_classifier():
    from edgeport.zoo.digits_net import DigitsNet

    model = DigitsNet()
    model.load_state_dict(torch.load(tm.ZOO / "digits_net.pt", weights_only=True))
    x = np.random.default_rng(0).normal(size=(16, 1, 28, 28)).astype(np.float32)
    logits = _forward(model.eval(), x)
    assert detect_task(_spec(logits), [logits], None).name == "classify"
    assert detect_task(_spec(logits), [logits], np.arange(16) % 10).name == "classify"


def test_a_task_that_cannot_fit_the_outputs_is_exit_2_before_conversion():
    from edgeport.tasks import check
    from edgeport.tasks.labels import TaskLabels

    logits, steps = np.zeros((4, 10), np.float32), np.zeros((4, 20, 11), np.float32)
    check(parse_task("ctc"), [steps], TaskLabels(text=np.array(["1"] * 4), charset=tuple("-0123456789")))
    for spec, refs, labels, words in (
            ("detect", [logits], None, "pass --task detect:layout"),
            ("detect:layout=pairs", [np.zeros((4, 300, 7))], None, "does not fit"),
            ("ctc", [logits], None, "not per-step class scores"),
            ("ctc:blank=11", [steps], None, "blank=11 but the output has 11 classes"),
            ("ctc", [steps], TaskLabels(text=np.array(["1"] * 4), charset=tuple("0123456789")), "charset has 10"),
            ("segment", [logits], None, "not per-pixel"),
            ("segment", [np.zeros((4, 5, 16, 16))], TaskLabels(masks=np.zeros((4, 8, 8), np.int64)), "masks of [8, 8]"),
            ("embed", [np.zeros((4, 1))], None, "one value per sample")):
        with pytest.raises(InputError) as err:
            check(parse_task(spec), refs, labels)
        assert words in err.value.one_line(), (spec, err.value.one_line())


def test_unfaulted_outputs_pass_both_ways():
    det = _forward(tm.seeded(tm.YoloStyleDetector()), tm.images(8, 64, seed=2))
    assert _verdicts(det, det * (1 + 1e-4), TaskSpec("detect", {"layout": "yolo"})) == (True, True)


def test_fixture_files_carry_their_task_labels(tmp_path):
    from edgeport.data.calibration import load_data

    for name, key in (("crnn_ctc", "text"), ("yolo_detector", "boxes"), ("tiny_segmenter", "masks")):
        args = tm.write(name, tmp_path / name, calib=8, val=8)
        val = args[args.index("--val") + 1]
        shape = (1, 1, 16, 64) if name == "crnn_ctc" else (1, *tm.FIXTURES[name][2])
        ds = load_data(val, [TensorSpec("x", shape, "float32")])
        assert getattr(ds.task_labels, key) is not None and len(ds.task_labels) == 8, name
        assert ds.scored_labels is ds.task_labels


def test_every_task_score_is_json_safe(crnn_out):
    import json

    det = _forward(tm.seeded(tm.YoloStyleDetector()), tm.images(4, 64))
    emb = _forward(tm.seeded(tm.EmbeddingNet()), tm.images(4))
    x, masks = tm.scenes(4)
    seg = _forward(tm.trained_segmenter(), x)
    logits = np.random.default_rng(0).normal(size=(4, 10))
    labels = TaskLabels(text=np.array(["12"] * 100), charset=tuple("-0123456789"))
    for spec, out, y in (("ctc", crnn_out, labels), ("detect", det, None), ("embed", emb, None),
                         ("segment", seg, TaskLabels(masks=masks)), ("classify", logits, np.arange(4)), ("raw", logits, None)):
        found = score(parse_task(spec), [out], [out * 0.999], y).to_dict()
        assert json.loads(json.dumps(found, allow_nan=False)) == found, spec


def test_layouts_score_the_same_model_the_same(crnn_out):
    got = crnn_out.copy()
    got[:30, :, [3, 4]] = got[:30, :, [4, 3]]
    ntc = score(parse_task("ctc"), [crnn_out], [got])
    for layout, axes in (("tnc", (1, 0, 2)), ("nct", (0, 2, 1))):
        other = score(parse_task(f"ctc:layout={layout}"), [crnn_out.transpose(axes)], [got.transpose(axes)])
        assert (other.value, other.details["cer_vs_float"]) == (ntc.value, ntc.details["cer_vs_float"])
    x, _ = tm.scenes(4)
    seg = _forward(tm.trained_segmenter(), x)
    noisy = seg + np.random.default_rng(0).normal(0, 2.0, seg.shape).astype(np.float32)
    nchw = score(parse_task("segment"), [seg], [noisy])
    nhwc = score(parse_task("segment"), [seg.transpose(0, 2, 3, 1)], [noisy.transpose(0, 2, 3, 1)])
    assert nchw.value == nhwc.value < 1.0 and nhwc.details["class_axis"] == "last"


def test_a_boxes_and_scores_pair_scores_like_the_concatenated_head():
    det = _forward(tm.seeded(tm.YoloStyleDetector()), tm.images(8, 64, seed=2))
    got = det.copy()
    got[..., 0] += 4.0

    def pair(y):
        xy, wh = y[..., :2], y[..., 2:4]
        return [np.concatenate([xy - wh / 2, xy + wh / 2], -1), y[..., 5:] * y[..., 4:5]]

    yolo = score(parse_task("detect"), [det], [got])
    pairs = score(parse_task("detect"), pair(det)[::-1], pair(got)[::-1])  # scores first: the order is found
    assert pairs.details["layout"] == "pairs" and (pairs.value, pairs.details["precision"]) == (yolo.value, yolo.details["precision"])
    yolov8 = score(parse_task("detect:layout=yolov8"), [det.transpose(0, 2, 1)], [got.transpose(0, 2, 1)])
    assert yolov8.details["layout"] == "yolov8" and 0.0 <= yolov8.value < 1.0  # no objectness: another decode
