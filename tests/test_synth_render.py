"""The clean page renderer: size, and labels that land on what is drawn (checked on pixels)."""
import numpy as np
import pytest

from ecgdigit.layout import A4, KEYPOINT_NAMES, LAYOUTS, LETTER, STANDARD_3X4, mm_to_pixels
from ecgdigit.synth.render import PageStyle, page_from_canonical_matrix, render_page, sample_style
from ecgdigit.synth.signals import simulate_record
from ecgdigit.synth.traces import canonical_trace_paths

FS = 500


@pytest.fixture(scope="module")
def page():
    style = PageStyle(grid="red", grid_large_rgb=(230, 0, 0), grid_small_rgb=(250, 180, 180),
                      trace_rgb=(0, 0, 0), label_rgb=(0, 0, 255), trace_width_px=1.0, header=True)
    return render_page(simulate_record(FS, 11), FS, 3, style=style)


def colour_near(img, xy, rgb, tol=60):
    x, y = np.round(xy).astype(int).T
    return np.abs(img[y, x].astype(int) - np.asarray(rgb)).sum(axis=1) < tol


def test_page_size_and_label_shapes(page):
    assert page.image.shape == (1700, 2200, 3) and page.image.dtype == np.uint8
    assert page.grid_nodes.shape == (44, 57, 2)
    assert page.keypoints.shape == (len(KEYPOINT_NAMES), 2) and np.isfinite(page.keypoints).all()
    assert len(page.lead_paths) == len(STANDARD_3X4.placements)
    # the large-grid pitch at 200 dpi is about 39.37 px
    assert np.allclose(np.diff(page.grid_nodes[0, :, 0]), 5 / 25.4 * 200)


def test_grid_nodes_land_on_large_grid_lines(page):
    nodes = page.grid_nodes.reshape(-1, 2)
    inside = (nodes[:, 0] <= 2199) & (nodes[:, 1] <= 1699)
    on_node = colour_near(page.image, nodes[inside], (230, 0, 0), tol=90)
    assert on_node.mean() > 0.9, on_node.mean()
    # half a large square away from the nodes there is no large line
    off = nodes[inside] + mm_to_pixels(2.5, 200)
    off = off[(off[:, 0] <= 2199) & (off[:, 1] <= 1699)]
    assert colour_near(page.image, off, (230, 0, 0), tol=90).mean() < 0.05


def test_keypoints_sit_on_their_label_text(page):
    img = page.image.astype(int)
    blue = (img[:, :, 2] > 150) & (img[:, :, 0] < 100) & (img[:, :, 1] < 100)
    r = int(mm_to_pixels(2.5, 200))
    for name, (x, y) in zip(KEYPOINT_NAMES, page.keypoints):
        x, y = int(round(x)), int(round(y))
        assert blue[y - r:y + r, x - r:x + r].sum() > 30, name
    # label ink exists only near keypoints: nowhere in the empty top-right corner
    assert blue[:500, 1500:].sum() == 0


def test_lead_paths_are_the_canonical_paths_and_are_drawn(page):
    M = page_from_canonical_matrix(200)
    paths = canonical_trace_paths(simulate_record(FS, 11), FS)
    for lp, cp in zip(page.lead_paths, paths):
        np.testing.assert_allclose(lp.xy, cp.xy @ M[:2, :2].T + M[:2, 2])
    xy = np.concatenate([lp.xy for lp in page.lead_paths])
    xy = xy[(xy[:, 1] >= 0) & (xy[:, 1] <= 1699)]
    dark = page.image[np.round(xy[:, 1]).astype(int), np.round(xy[:, 0]).astype(int)].max(axis=1) < 140
    assert dark.mean() > 0.95, dark.mean()


def test_same_seed_same_page_and_styles_vary():
    x = simulate_record(250, 2)
    a = render_page(x, 250, 9, dpi=100)
    b = render_page(x, 250, 9, dpi=100)
    assert np.array_equal(a.image, b.image)
    grids = {sample_style(np.random.default_rng(s)).grid for s in range(60)}
    assert {"red", "pink", "orange", "blue", "green", "grey", "none"} <= grids
    widths = [sample_style(np.random.default_rng(s)).trace_width_px for s in range(60)]
    assert min(widths) < 0.8 and max(widths) > 2.2


@pytest.mark.parametrize("layout_name,paper", [("6x2", LETTER), ("12x1", LETTER), ("3x4+II", A4),
                                               ("3x4+II,V1,V5", LETTER)])
def test_other_layouts_and_paper(layout_name, paper):
    layout = LAYOUTS[layout_name]
    p = render_page(simulate_record(250, 4), 250, 1, layout=layout, paper=paper, dpi=100)
    assert p.image.shape[:2] == paper.pixels(100)[::-1]
    assert p.grid_nodes.shape == (paper.grid_horizontal_lines, paper.grid_vertical_lines, 2)
    assert len(p.lead_paths) == len(layout.placements)
    n_leads = np.isfinite(p.keypoints[:12, 0]).sum()
    assert n_leads == 12
    # the rhythm-label keypoint exists exactly when lead II is also printed as a full strip
    has_rhythm = (any(pl.lead == "II" and pl.duration == 10 for pl in layout.placements)
                  and len(layout.placements_of("II")) > 1)
    assert np.isfinite(p.keypoints[12, 0]) == has_rhythm


def test_header_prints_the_record_rate():
    from ecgdigit.synth.signals import simulate_record_with_params

    x, params = simulate_record_with_params(250, 8, heart_rate=97.0)
    p = render_page(x, 250, 2, style=PageStyle(header=True), dpi=100, signal_params=params)
    assert any("Vent. rate 97 BPM" in line for line in p.header_lines)
    assert any("25 mm/s" in line and "10 mm/mV" in line for line in p.header_lines)
