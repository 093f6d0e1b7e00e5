"""The conveyor-line generator: determinism, ground truth, motion, nuisances, schedule, dataset."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from visionline.camera.conveyor import ConveyorSource
from visionline.camera.frames import EncodedFrame, sniff_content_type
from visionline.synthetic import DEFECT_CLASSES, LineGenerator, Ramp, Schedule
from visionline.synthetic import nuisance as nz
from visionline.synthetic.dataset import read_parts, read_truth, write_dataset
from visionline.synthetic.schedule import FACTORS, NUISANCES, Step
from visionline.synthetic.truth import RoiMask

SMALL = (320, 180)
SOME_NUISANCES = {"sensor_noise": 0.5, "occlusion": 0.8, "gradient": 0.3, "flicker": 0.5}


def test_same_seed_and_index_give_the_same_frame_in_any_order() -> None:
    first = LineGenerator(7, SMALL, nuisances=SOME_NUISANCES)
    image, truth = first.frame(12)
    other = LineGenerator(7, SMALL, nuisances=SOME_NUISANCES)
    for index in (30, 3, 11):  # render others first: frame 12 must not depend on them
        other.frame(index)
    again, again_truth = other.frame(12)
    assert np.array_equal(image, again)
    assert truth == again_truth
    assert not np.array_equal(image, LineGenerator(8, SMALL).frame(12)[0])


@pytest.mark.parametrize("defect_class", DEFECT_CLASSES)
def test_each_defect_class_has_a_mask_inside_its_box_and_its_part(defect_class: str) -> None:
    generator = LineGenerator(1, SMALL, defect_rate=1.0, defect_classes=(defect_class,))
    found = 0
    for index in range(12):
        for part in generator.frame(index)[1].parts:
            part_mask = part.mask.paste(SMALL)
            for defect in part.defects:
                assert defect.defect_class == defect_class
                mask = defect.mask.decode()
                assert mask.any() and defect.mask.box == defect.box
                assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()
                assert not (defect.mask.paste(SMALL) & ~part_mask).any()
                found += 1
    assert found >= 3


def test_a_part_crosses_the_frame_over_several_frames_in_the_belt_direction() -> None:
    generator = LineGenerator(2, SMALL)
    tracks: dict[int, list[tuple[int, int]]] = {}
    for index in range(40):
        for part in generator.frame(index)[1].parts:
            tracks.setdefault(part.part_id, []).append((index, part.box[2]))
    crossed = [t for t in tracks.values() if t[0][0] > 0 and t[-1][0] < 39]
    assert len(crossed) >= 5
    for track in crossed:
        frames, right_edges = zip(*track, strict=True)
        assert 6 <= len(track) <= 12
        assert list(frames) == list(range(frames[0], frames[-1] + 1))
        assert all(b >= a for a, b in itertools.pairwise(right_edges))
    labels = {label.part_id: label for label in generator.part_truth(40)}
    for part_id, track in tracks.items():
        assert (labels[part_id].first_frame, labels[part_id].last_frame) == (
            track[0][0],
            track[-1][0],
        )


def test_defect_rate_decides_the_share_of_defective_parts() -> None:
    generator = LineGenerator(4, SMALL, defect_rate=0.3)
    shares = [bool(generator.defect_classes_of(k)) for k in range(400)]
    assert 0.22 < np.mean(shares) < 0.38
    assert not any(LineGenerator(4, SMALL, defect_rate=0.0).defect_classes_of(k) for k in range(50))


def test_strength_zero_is_identity() -> None:
    plain = LineGenerator(5, SMALL).frame(6)[0]
    zeros = LineGenerator(5, SMALL, nuisances=dict.fromkeys(NUISANCES, 0.0)).frame(6)[0]
    assert np.array_equal(plain, zeros)
    image = plain.astype(np.float32)
    profile = LineGenerator(5, SMALL).profile
    zero = dict.fromkeys(NUISANCES, 0.0)
    assert nz.lighting(image, zero, profile, 1.3) is image
    for result in (
        nz.resolution(image, 0),
        nz.lens_blur(image, 0),
        nz.motion_blur(plain, 0, 40),
        nz.sensor_noise(image, 0, image, np.random.default_rng(0)),
    ):
        assert np.array_equal(result, image) or np.array_equal(result, plain)
    assert np.array_equal(nz.perspective(SMALL, 0, profile), np.eye(3))
    assert nz.jpeg_quality(0, 90) == 90 and nz.jpeg_quality(1, 90) < 20


def test_brightness_strength_lowers_mean_brightness_monotonically() -> None:
    means = [
        LineGenerator(5, SMALL, nuisances={"brightness": s}).frame(6)[0].mean()
        for s in (0, 0.25, 0.5, 0.75, 1.0)
    ]
    assert all(b < a for a, b in itertools.pairwise(means))


def test_every_nuisance_changes_the_frame() -> None:
    plain = [LineGenerator(5, SMALL).frame(i)[0] for i in (0, 6)]
    for name in FACTORS:
        if name == "jpeg":
            continue  # applied at encode
        generator = LineGenerator(5, SMALL, nuisances={name: 1.0})
        changed = [generator.frame(i)[0] for i in (0, 6)]
        assert not all(map(np.array_equal, changed, plain)), name


def test_perspective_keeps_defect_masks_on_the_defects() -> None:
    generator = LineGenerator(3, SMALL, defect_rate=1.0, nuisances={"perspective": 1.0})
    checked = 0
    for index in range(0, 12, 2):
        image, truth = generator.frame(index)
        clean, clean_truth = generator.frame(index, clean=True)
        diff = np.abs(image.astype(int) - clean.astype(int)).max(axis=2) > 8
        for part in truth.parts:
            for defect in part.defects:
                mask = defect.mask.paste(SMALL)
                assert diff[mask].mean() > 0.5, defect.defect_class
                checked += 1
        assert [p.box for p in truth.parts] == [p.box for p in clean_truth.parts]
    assert checked >= 4


def test_occlusion_records_the_hidden_fraction() -> None:
    truths = [LineGenerator(6, SMALL, nuisances={"occlusion": 1.0}).frame(i)[1] for i in (4, 8)]
    fractions = [p.occluded_fraction for t in truths for p in t.parts]
    assert any(f > 0.02 for f in fractions) and all(0 <= f <= 1 for f in fractions)


def test_schedule_curves_and_per_camera_overrides() -> None:
    schedule = Schedule(
        {"brightness": Ramp(0.0, 0.8, 0.0, 600.0), "flicker": 0.2},
        cameras={"cam-2": {"brightness": Step(0.1, 0.5, 60.0), "shadow": 2.0}},
    )
    ramp = [schedule.strengths_at(t)["brightness"] for t in (0, 150, 300, 600, 900)]
    assert ramp == pytest.approx([0.0, 0.2, 0.4, 0.8, 0.8])
    cam2 = schedule.strengths_at(30, "cam-2")
    assert cam2["brightness"] == 0.1 and cam2["shadow"] == 1.0 and cam2["flicker"] == 0.2
    assert schedule.strengths_at(61, "cam-2")["brightness"] == 0.5
    assert set(schedule.strengths_at(0)) == set(FACTORS) and schedule.strengths_at(0)["jpeg"] == 0
    with pytest.raises(ValueError, match="unknown nuisance"):
        Schedule({"fog": 1.0})


def test_generator_follows_its_schedule() -> None:
    generator = LineGenerator(0, SMALL, fps=1.0, schedule=Schedule({"jpeg": Ramp(0, 1, 0, 10)}))
    assert generator.frame(5)[1].strengths["jpeg"] == pytest.approx(0.5)
    assert generator.frame(10)[1].jpeg_quality < generator.frame(0)[1].jpeg_quality


def test_dataset_round_trip(tmp_path) -> None:
    generator = LineGenerator(9, SMALL, defect_rate=0.6, nuisances={"sensor_noise": 0.3})
    assert write_dataset(generator, tmp_path, 4) == 4
    for index in range(4):
        assert read_truth(tmp_path, index) == generator.frame(index)[1]
        image = cv2.imread(str(tmp_path / "frames" / f"{index:06d}.jpg"))
        assert image.shape == (SMALL[1], SMALL[0], 3)
    assert read_parts(tmp_path) == generator.part_truth(4)


def test_rle_round_trip() -> None:
    rng = np.random.default_rng(1)
    for shape in ((1, 1), (5, 7), (13, 4)):
        array = rng.random(shape) < 0.4
        array[0, 0] = True
        rle = RoiMask(3, 2, array).rle()
        assert np.array_equal(rle.decode(), array) and rle.counts[0] == 0


def test_conveyor_source_yields_jpeg_frames_with_truth() -> None:
    source = ConveyorSource(SMALL, seed=2, jpeg_quality=70)
    frames = list(itertools.islice(source, 3))
    assert all(isinstance(f, EncodedFrame) and sniff_content_type(f.data) for f in frames)
    assert source.last_truth is not None and source.last_truth.frame_index == 2
    source.close()


def test_a_realtime_conveyor_skips_late_frames_and_stamps_their_capture_time():
    now = [1000.0]
    source = ConveyorSource(resolution=(320, 180), seed=1, realtime_fps=10, clock=lambda: now[0])
    frames = iter(source)
    first = next(frames)
    assert source.last_index == 0 and first.captured_at_ms == 1_000_000
    now[0] += 0.35  # the machine was busy: frames 1 and 2 were never taken
    third = next(frames)
    assert source.last_index == 3 and third.captured_at_ms == 1_000_300
    fourth = next(frames)  # early: the next frame, never one already sent
    assert source.last_index == 4 and fourth.captured_at_ms == 1_000_400


def test_glare_washes_out_contrast_without_clipping() -> None:
    plain = LineGenerator(5, SMALL).frame(6)[0].astype(float)
    hazy = LineGenerator(5, SMALL, nuisances={"glare": 1.0}).frame(6)[0].astype(float)
    assert hazy.mean() > plain.mean() + 30 and hazy.std() < plain.std() * 0.5
    assert hazy.min() >= 0.6 * 235 - 1 and (hazy == 255).mean() <= (plain == 255).mean()
    assert "glare" not in NUISANCES  # never in the training data: a drift only
