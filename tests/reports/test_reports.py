"""Reports escape every text that comes from input files."""

from __future__ import annotations

from bids_recon.reports.render import render

EVIL = '<script>alert("x")</script>'


def test_group_report_escapes_stimulus_names():
    html = render(
        "group.html",
        version="0",
        generated="now",
        participants=[{"label": EVIL, "report": None, "missing": []}],
        identification={"columns": [EVIL], "rows": [(EVIL, [(0.9, 0.8, 1.0)])]},
        identification_svg="",
        decoding={"columns": [EVIL], "rows": [(EVIL, [0.5])]},
        grids=[{"set": EVIL, "rows": [(EVIL, [("stimulus", None), (EVIL, None)])]}],
    )
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


def test_participant_report_escapes_stimulus_names():
    html = render(
        "participant.html",
        label="01",
        version="0",
        generated="now",
        bids_dir=EVIL,
        spec_name=EVIL,
        spec_source=EVIL,
        network="builtin",
        provenance={},
        device="cpu",
        seed=0,
        run_uuid="x",
        command=EVIL,
        elapsed="1 s",
        methods=[EVIL],
        sets=[
            {"name": EVIL, "role": "test", "filters": EVIL, "blocks": EVIL, "stimulus_column": EVIL}
        ],
        stages=[("samples", "done")],
        data=[],
        decoding={"columns": [], "rows": []},
        recons=[
            {
                "set": EVIL,
                "rows": [{"stimulus": EVIL, "image": None, "oracle": None, "decoded": []}],
            }
        ],
        identification=[],
        messages=[EVIL],
        rois=[{"roi": EVIL, "voxels": 1, "decoder": EVIL}],
        decoding_svg="",
        loss_svg="",
    )
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_plots_are_inline_svg_with_escaped_names_and_labelled_axes():
    from bids_recon.reports.plots import interval_plot, line_plot

    svg = line_plot({EVIL: [0.1, 0.5, float("nan"), 0.3]}, ["a", "b", "c", EVIL], "r", "layer")
    assert svg.startswith("<svg") and "<script>" not in svg and "&lt;script&gt;" in svg
    assert ">layer<" in svg and ">r<" in svg  # axis labels, as text
    assert line_plot({"empty": []}) == "" and line_plot({"zero": [0.0]}, log_y=True) == ""
    svg = interval_plot(
        ["natural", "letters"],
        {"sub-01": [(0.9, 0.8, 1.0), (0.6, *[float("nan")] * 2)]},
        "identification",
        0.5,
    )
    assert ">natural<" in svg and ">chance (0.5)<" in svg


def test_a_stimulus_without_image_never_shows_one(tmp_path):
    import json

    from PIL import Image

    from bids_recon.io.stimuli import StimulusIndex
    from bids_recon.reports.participant import recon_grids

    recon = tmp_path / "out" / "sub-01" / "recon"
    recon.mkdir(parents=True)
    stimuli = tmp_path / "stimuli"
    stimuli.mkdir()
    for name in ("fixation", "shape"):
        Image.new("RGB", (8, 8), "red").save(stimuli / f"{name}.png")
        stem = recon / f"sub-01_set-imagery_stim-{name}_desc-recon_image"
        Image.new("RGB", (8, 8), "blue").save(stem.with_suffix(".png"))
        meta = {"Set": "imagery", "StimulusName": name, "Source": "decoded"}
        stem.with_suffix(".json").write_text(json.dumps(meta))
    index = StimulusIndex(stimuli, [".png"])
    grids = recon_grids(tmp_path / "out", "01", index, {"imagery": ["fixation"]})
    rows = {row["stimulus"]: row for row in grids[0]["rows"]}
    assert rows["fixation"]["image"] is None and rows["shape"]["image"] is not None
    assert rows["fixation"]["decoded"]  # the reconstruction itself is shown
