"""The peer benchmark's moving parts, fast and without face_recognition.

Why: ``scripts/bench`` takes half an hour, so a mistake in the child-process
plumbing, the peer pipeline or the report would otherwise surface only at
the end of a long run. These run the product and peer P2 on five frames
(in fresh processes, as the benchmark does) and render a report from them;
the figures themselves are not checked (no wall-clock limits), only that
they are there and consistent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.compare_peers import (
    all_clips_fps,
    headline,
    in_child,
    parse_args,
    pipeline_tables,
    render,
    stage_table,
    summary,
)
from bench.hamilton_cast import CLIP
from bench.peers import PRODUCT, YUNET_MOBILEFACENET, Job, PipelineRun, run_job
from bench.search_scale import SearchRun
from edgewatch.timing import STAGES

FRAMES = 5


@pytest.fixture(scope="module")
def five_frames(shared_dir: Path) -> list[PipelineRun]:
    """The product and P2 on the first five frames of the hamilton clip, each in a child."""
    clip = shared_dir / "data" / "video" / CLIP
    return [
        in_child(
            run_job,
            Job(pipeline=name, clip=clip, shared=shared_dir, max_frames=FRAMES, label=name),
        )
        for name in (PRODUCT, YUNET_MOBILEFACENET)
    ]


def test_each_pipeline_runs_the_same_frames_in_a_fresh_process(
    five_frames: list[PipelineRun],
) -> None:
    for run in five_frames:
        assert run.clip == CLIP
        assert run.frames == FRAMES
        assert run.wall_s > 0
        assert run.fps == pytest.approx(FRAMES / run.wall_s)
        assert set(run.stage_ms) == set(STAGES)
        assert run.stage_ms["decode"] > 0
        assert run.stage_ms["detect"] > 0
        assert 0 < run.baseline_rss_mib < run.loaded_rss_mib <= run.peak_rss_mib
        assert run.setup_s > 0
        assert run.load_average >= 0


def test_the_peer_embeds_every_face_it_can_align(five_frames: list[PipelineRun]) -> None:
    """The hamilton clip's first frames hold several faces; YuNet finds them and P2 embeds
    each one whose five points allow an alignment (the product's gates embed fewer)."""
    product, peer = five_frames
    assert peer.pipeline == YUNET_MOBILEFACENET
    assert peer.faces_detected > 0
    assert 0 < peer.faces_embedded <= peer.faces_detected
    assert peer.stage_ms["landmarks"] < peer.stage_ms["detect"]  # no landmark model
    assert peer.embed_ms_per_face > 0
    assert product.faces_embedded <= product.faces_detected


def test_report_from_real_runs(five_frames: list[PipelineRun]) -> None:
    args = parse_args(
        [
            "--repeat",
            "1",
            "--max-frames",
            str(FRAMES),
            "--pipelines",
            f"{PRODUCT},{YUNET_MOBILEFACENET}",
            "--sections",
            "pipelines",
        ]
    )
    started = {"time": "t0", "load": "0.00 / 0.00 / 0.00"}
    finished = {"time": "t1", "load": "0.00 / 0.00 / 0.00", "elapsed_min": 0.5}
    report = render(args, "cmd", "a machine", started, finished, {"pipelines": five_frames})
    assert f"the first {FRAMES} frames of each clip" in report
    assert f"| {CLIP} | {FRAMES} |" in report
    assert "## On a Raspberry Pi 4 or 5: NOT MEASURED" in report
    assert "## Matching at scale" not in report  # sections not run are not pretended
    block = summary(five_frames, [PRODUCT, YUNET_MOBILEFACENET])[CLIP]
    assert block[YUNET_MOBILEFACENET]["product_fps_ratio_median"] == pytest.approx(
        five_frames[0].fps / five_frames[1].fps
    )


def fake_run(pipeline: str, clip: str, frames: int, wall_s: float) -> PipelineRun:
    return PipelineRun(
        pipeline=pipeline,
        clip=clip,
        frames=frames,
        faces_detected=frames,
        faces_embedded=frames,
        faces_matched=0,
        wall_s=wall_s,
        setup_s=1.0,
        stage_ms=dict.fromkeys(STAGES, 1.0),
        embed_ms_per_face=1.0,
        baseline_rss_mib=100.0,
        loaded_rss_mib=200.0,
        peak_rss_mib=250.0,
        load_average=0.5,
    )


def test_ratios_pair_the_runs_that_ran_side_by_side() -> None:
    """Repeat by repeat, clip by clip, pipeline by pipeline, as the driver runs them."""
    runs = [
        fake_run(PRODUCT, "a.mp4", 100, 10.0),  # repeat 1: 10 frames/s
        fake_run(YUNET_MOBILEFACENET, "a.mp4", 100, 50.0),  # 2 frames/s
        fake_run(PRODUCT, "b.mp4", 50, 10.0),
        fake_run(YUNET_MOBILEFACENET, "b.mp4", 50, 10.0),
        fake_run(PRODUCT, "a.mp4", 100, 20.0),  # repeat 2: 5 frames/s
        fake_run(YUNET_MOBILEFACENET, "a.mp4", 100, 50.0),
        fake_run(PRODUCT, "b.mp4", 50, 10.0),
        fake_run(YUNET_MOBILEFACENET, "b.mp4", 50, 10.0),
    ]
    pipelines = [PRODUCT, YUNET_MOBILEFACENET]
    assert all_clips_fps(runs, PRODUCT) == pytest.approx([150 / 20, 150 / 30])
    assert all_clips_fps(runs, YUNET_MOBILEFACENET) == pytest.approx([150 / 60, 150 / 60])
    table = "\n".join(pipeline_tables(runs, pipelines))
    # a.mp4: 10/2 = 5.0 and 5/2 = 2.5 -> median 3.8 (2.5-5.0)
    assert "| a.mp4 | 100 | 7.5 (5.0-10.0) | 2.0 (2.0-2.0) | 3.8× (2.5-5.0) |" in table
    assert "**all clips**" in table
    stages = "\n".join(stage_table(runs, pipelines))
    peer_row = next(line for line in stages.splitlines() if "P2" in line and "a.mp4" in line)
    assert peer_row.count("| - |") == 1  # P2 has no landmark stage
    assert "as fast" in headline(runs, pipelines)


def test_search_and_quick_options() -> None:
    args = parse_args(["--quick"])
    assert args.repeat == 2 and args.max_frames == 10 and args.light_load_sizes == []
    with pytest.raises(SystemExit):
        parse_args(["--pipelines", "no-such-pipeline"])
    run = SearchRun(1000, 128, "1", 0.01, 0.05, 0.1, 40, 50.0, 1.0, 2.0, True)
    report = render(
        parse_args(["--sections", "search"]),
        "cmd",
        "a machine",
        {"time": "t0", "load": "0"},
        {"time": "t1", "load": "0", "elapsed_min": 0.1},
        {"search": [run]},
    )
    assert "| 1,000 | - | - | 0.050 (1 run) |" in report
