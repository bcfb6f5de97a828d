"""The classical rectifier on synthetic pages with exact grid-node labels."""
import cv2
import numpy as np
import pytest

from ecgdigit import layout
from ecgdigit.errors import InputError
from ecgdigit.rectify import Rectification, rectify_to_canonical
from ecgdigit.rectify.api import USABLE_CONFIDENCE
from ecgdigit.synth.sample import make_sample

SEED = 4242


def _px_per_mm(nodes):
    """Local px/mm at every node from the distance to its right/lower neighbours."""
    dx = np.linalg.norm(np.diff(nodes, axis=1), axis=-1)
    dy = np.linalg.norm(np.diff(nodes, axis=0), axis=-1)
    s = np.zeros(nodes.shape[:2])
    s[:, :-1] += dx
    s[:, -1] += dx[:, -1]
    s[:-1] += dy
    s[-1] += dy[-1]
    return s / 2.0 / layout.LARGE_GRID_MM


def _node_error_mm(pred, truth, shape):
    h, w = shape[:2]
    err = np.linalg.norm(pred - truth, axis=-1) / _px_per_mm(truth)
    inside = (truth[..., 0] >= 0) & (truth[..., 0] <= w - 1) & (truth[..., 1] >= 0) & (truth[..., 1] <= h - 1)
    return err[inside]


def _map_at_nodes(r: Rectification) -> np.ndarray:
    """The dense map sampled (bilinearly) at the canonical position of every page node."""
    nodes_c = layout.canonical_grid_nodes().astype(np.float32)
    inside = (nodes_c[..., 0] <= layout.CANONICAL_WIDTH - 1) & (nodes_c[..., 1] <= layout.CANONICAL_HEIGHT - 1)
    mx = cv2.remap(r.map_x, nodes_c[..., 0], nodes_c[..., 1], cv2.INTER_LINEAR)
    my = cv2.remap(r.map_y, nodes_c[..., 0], nodes_c[..., 1], cv2.INTER_LINEAR)
    return np.stack([mx, my], axis=-1), inside


@pytest.fixture(scope="module")
def clean():
    return make_sample(SEED, 0, "0001")


@pytest.fixture(scope="module")
def clean_result(clean):
    return rectify_to_canonical(clean.image)


def test_clean_page_nodes_and_map_within_0p2_mm(clean, clean_result):
    r = clean_result
    assert r.canonical.shape == (layout.CANONICAL_HEIGHT, layout.CANONICAL_WIDTH, 3) and r.canonical.dtype == np.uint8
    assert r.map_x.shape == r.map_y.shape == (layout.CANONICAL_HEIGHT, layout.CANONICAL_WIDTH)
    assert r.map_x.dtype == np.float32
    assert r.nodes.shape == (44, 57, 2) and r.node_found.shape == (44, 57) and r.node_found.dtype == bool
    assert np.isfinite(r.nodes).all() and not (np.abs(r.nodes).sum(-1) == 0).any()
    assert r.orientation == 0 and r.confidence > 0.5, r.reason
    assert r.node_found.sum() > 1500
    err = _node_error_mm(r.nodes, clean.grid_nodes, clean.image.shape)
    assert err.mean() < 0.2 and np.percentile(err, 95) < 0.3, (err.mean(), np.percentile(err, 95))
    at, inside = _map_at_nodes(r)
    err_map = np.linalg.norm(at - clean.grid_nodes, axis=-1)[inside] / _px_per_mm(clean.grid_nodes)[inside]
    assert err_map.mean() < 0.2, err_map.mean()


def test_canonical_image_matches_exact_rectification(clean, clean_result):
    """The remapped page and the page remapped through the exact labels agree (grid and traces)."""
    from ecgdigit.synth.sample import canonical_view

    exact, _ = canonical_view(clean, with_masks=False)
    # thin 1 mm lines decorrelate with sub-pixel offsets: compare at about 0.3 mm resolution
    a = cv2.GaussianBlur(cv2.cvtColor(clean_result.canonical, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 3)
    b = cv2.GaussianBlur(cv2.cvtColor(exact, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 3)
    a, b = a[100:-100, 100:-100] - a.mean(), b[100:-100, 100:-100] - b.mean()
    ncc = float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))
    assert ncc > 0.9, ncc


def test_perspective_rotated_page_within_0p6_mm(clean):
    img = clean.image
    h, w = img.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[120, 60], [w + 40, 160], [w - 30, h + 150], [60, h + 40]])
    H = cv2.getPerspectiveTransform(src, dst)
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 6.0, 1.0)
    H = np.vstack([rot, [0, 0, 1]]) @ H
    out_size = (w + 200, h + 250)
    warped = cv2.warpPerspective(img, H, out_size, flags=cv2.INTER_LINEAR, borderValue=(90, 80, 70))
    truth = cv2.perspectiveTransform(clean.grid_nodes.reshape(-1, 1, 2), H).reshape(clean.grid_nodes.shape)
    r = rectify_to_canonical(warped)
    assert r.orientation == 0, r.reason
    err = _node_error_mm(r.nodes, truth, warped.shape)
    assert err.mean() < 0.6, err.mean()


@pytest.mark.parametrize("code", range(layout.N_ORIENTATIONS))
def test_orientation_codes_recovered(clean, code):
    img = layout.apply_orientation(clean.image, code)
    r = rectify_to_canonical(img)
    assert r.orientation == code, (code, r.orientation, r.reason)


def test_no_grid_gives_zero_confidence_and_reason():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (900, 1200, 3), dtype=np.uint8)
    r = rectify_to_canonical(noise)
    assert r.confidence < 0.1 and r.reason
    blank = np.full((1700, 2200, 3), 255, np.uint8)
    r = rectify_to_canonical(blank)
    assert r.rejected and r.reason
    tiny = rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)
    r = rectify_to_canonical(tiny)
    assert r.rejected and "small" in r.reason
    assert r.canonical.shape == (layout.CANONICAL_HEIGHT, layout.CANONICAL_WIDTH, 3)
    assert np.isfinite(r.nodes).all()


def test_grayscale_and_16_bit_pages(clean):
    gray = cv2.cvtColor(clean.image, cv2.COLOR_RGB2GRAY)
    r = rectify_to_canonical((gray.astype(np.uint16) * 257))
    assert r.orientation == 0 and r.confidence > 0, r.reason
    err = _node_error_mm(r.nodes, clean.grid_nodes, gray.shape)
    assert err.mean() < 0.2


def test_bad_arrays_raise_input_error():
    with pytest.raises(InputError):
        rectify_to_canonical(np.zeros((10,), np.uint8))
    with pytest.raises(InputError):
        rectify_to_canonical(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(InputError):
        rectify_to_canonical("not an image")
    with pytest.raises(InputError):
        rectify_to_canonical(np.zeros((100, 100, 3), np.uint8), method="nope")


@pytest.fixture(scope="module")
def photo():
    """A phone photo of a printed page (type 0005: perspective, curl, light, table around it)."""
    return make_sample(SEED, 0, "0005")


@pytest.mark.parametrize("extra", [0, 4, 6])
def test_photo_mirror_and_flip_told_apart(photo, extra):
    """Left-right mirrors and up-down flips of a photo keep the same trace bands; the pulses,
    labels and header must decide (the classical rectifier used to confuse them on photos)."""
    assert photo.orientation == 0 and photo.page.style.grid != "none"
    img = layout.apply_orientation(photo.image, extra)
    r = rectify_to_canonical(img)
    assert r.orientation == extra, (extra, r.orientation, r.reason)
    if extra == 0:
        err = _node_error_mm(r.nodes, photo.grid_nodes, photo.image.shape)
        assert err.mean() < 0.6, err.mean()


def _crop(sample, x0, x1, y0=0, y1=None):
    """A part of a page (a close-up photo or a scan that missed an edge) and its node labels."""
    img = sample.image[y0:y1, x0:x1]
    return np.ascontiguousarray(img), sample.grid_nodes - np.array([x0, y0])


@pytest.fixture(scope="module")
def scan():
    return make_sample(SEED, 1, "0003")


def test_page_cut_at_the_left_is_anchored_by_its_trace_ends(scan):
    """With the pulses and the first column of labels cut off, the layout template alone slides
    the page by whole boxes; the rows' common trace end (10 s) fixes the time anchor."""
    img, truth = _crop(scan, int(0.15 * scan.image.shape[1]), None)
    r = rectify_to_canonical(img)
    assert r.orientation == scan.orientation == 0, r.reason
    err = _node_error_mm(r.nodes, truth, img.shape)
    assert err.mean() < 0.2, err.mean()


def test_small_page_in_a_large_photo(clean):
    """A page filling a fifth of the frame: pass 1 looks again at the page cropped out of the frame."""
    s = 0.45
    page = cv2.resize(clean.image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    canvas = np.full((1500, 2000, 3), (60, 70, 80), np.uint8)
    canvas[400:400 + page.shape[0], 700:700 + page.shape[1]] = page
    truth = (clean.grid_nodes + 0.5) * s - 0.5 + np.array([700, 400])
    r = rectify_to_canonical(canvas)
    assert r.orientation == 0, r.reason
    err = _node_error_mm(r.nodes, truth, canvas.shape)
    assert err.mean() < 0.3, err.mean()


def test_screen_page_is_told_from_the_laptop_around_it():
    """A laptop photographed with the ECG on its screen (seed 10003 0006 #6): the bright region
    joins the page to the keyboard through the lit bezel, too ragged to be a page, so the grid was
    looked for over the whole photo (the page a sixth of it, under the screen's pixel texture) and
    not found. The page is the brightest part of that region: split off by a second threshold."""
    from ecgdigit.rectify.classical import PASS1_LONG_SIDE, _page_mask

    smp = make_sample(10003, 6, "0006")
    h, w = smp.image.shape[:2]
    s = PASS1_LONG_SIDE / max(h, w)
    mask = _page_mask(cv2.resize(smp.image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA))
    assert mask is not None and mask.mean() < 0.25  # the page alone, not the keyboard
    j, i = np.round(((smp.grid_nodes[[8, 22, 36]][:, [8, 28, 48]] + 0.5) * s - 0.5)).astype(int).reshape(-1, 2).T[::-1]
    assert mask[j, i].all()  # nodes across the page's trace area lie in it
    r = rectify_to_canonical(smp.image)
    err = _node_error_mm(r.nodes, smp.grid_nodes, smp.image.shape)
    assert r.orientation == 0 and err.mean() < 0.3 and r.confidence >= 0.5, (err.mean(), r.confidence, r.reason)


@pytest.mark.parametrize("k", [0, 9])
def test_screen_moire_is_not_taken_for_the_grid(k):
    """Laptop screens photographed with the page on them (seed 10002 0006): over a tile of the
    page the screen's moire is more periodic than the faint grid. #0: a moire lattice of a third
    of the box; #9: one turned 21 degrees from the page's edges. Both were refused; in a look cropped
    to the page mask the pitch is bounded by the page's size and the grid runs along its edges."""
    smp = make_sample(10002, k, "0006")
    r = rectify_to_canonical(smp.image)
    err = _node_error_mm(r.nodes, smp.grid_nodes, smp.image.shape)
    assert r.orientation == smp.orientation and err.mean() < 0.5 and r.confidence >= 0.5, \
        (err.mean(), r.confidence, r.reason)


@pytest.mark.parametrize("seed, k, min_conf", [(10004, 3, 0.5), (10000, 15, 0.1)])
def test_grid_growth_tries_both_starts_when_moire_leaves_it_in_doubt(seed, k, min_conf):
    """Screen photos (type 0006) whose tiles hold moire lattices turned off the page's edges beside
    the grid's: their pitches would make the lattice 'local' (grow from where it was measured), the
    grid's own would not (grow from the page's middle). Each start failed on one of these pages
    (10004 #3: 4.3 mm at confidence 0.06 from the middle; 10000 #15 refused from the lattice's
    origin); where the first look does not match well, the other start is tried."""
    smp = make_sample(seed, k, "0006")
    r = rectify_to_canonical(smp.image)
    err = _node_error_mm(r.nodes, smp.grid_nodes, smp.image.shape)
    assert r.orientation == smp.orientation and err.mean() < 0.5 and r.confidence >= min_conf, \
        (err.mean(), r.confidence, r.reason)


def test_portrait_page_mask_tells_the_turned_axis():
    """The sheet's outline: a landscape page turned a quarter stands portrait (at a few degrees'
    tilt too); an upright one, a square or no mask does not."""
    from ecgdigit.rectify.api import page_mask_is_portrait

    def sheet(w, h, angle):
        mask = np.zeros((900, 900), np.uint8)
        box = cv2.boxPoints(((450, 450), (w, h), angle)).astype(np.int32)
        cv2.fillPoly(mask, [box], 1)
        return mask.astype(bool)

    assert page_mask_is_portrait(sheet(500, 650, 0)) and page_mask_is_portrait(sheet(500, 650, 12))
    assert not page_mask_is_portrait(sheet(650, 500, 0)) and not page_mask_is_portrait(sheet(650, 500, -12))
    assert not page_mask_is_portrait(sheet(560, 560, 0)) and not page_mask_is_portrait(None)


def test_refused_screen_page_keeps_its_turn_when_the_sheet_stands_portrait():
    """A laptop screen turned a quarter, its ECG drowned in moire (seed 10002 0006 #15): the page
    cannot be read, and a weakly matched turned reading of a refused page falls back to upright -
    unless the sheet's outline stands portrait, as here: then the quarter turn read is kept."""
    smp = make_sample(10002, 15, "0006")
    assert smp.orientation == 3
    r = rectify_to_canonical(smp.image)
    assert r.confidence < 0.1 and r.orientation == 3, (r.orientation, r.confidence, r.reason)


def test_refused_page_keeps_a_turn_its_row_ends_confirm():
    """A mouldy black-and-white scan turned 180 degrees (seed 10005 0012 #6): the mould blurs the
    labels, so mirror and not-mirror score alike and the page falls under the usable confidence.
    A weakly matched turned reading of such a page falls back to upright, but here all four rows
    end at that reading's own 10 s line: the turn is kept (it was read upright, 194 mm off)."""
    smp = make_sample(10005, 6, "0012")
    assert smp.orientation == 2
    r = rectify_to_canonical(smp.image)
    err = _node_error_mm(r.nodes, smp.grid_nodes, smp.image.shape)
    assert r.orientation == 2 and err.mean() < 0.2, (r.orientation, err.mean(), r.confidence, r.reason)


def test_sheet_on_a_background_as_bright_as_itself_is_found_by_colour():
    """A crumpled cream sheet turned 90 degrees on a lit pink cloth (seed 10005 0009 #0): the
    cloth's highlights are as bright as the sheet, so a brightness threshold joins them (no page
    mask; the page was refused and read upright). The sheet differs from the cloth in hue: its
    mask comes from the distance to the border's colour, and the page is read turned, in place."""
    from ecgdigit.rectify.api import border_colour_page_mask, page_mask_is_portrait
    from ecgdigit.rectify.classical import PAGE_MASK_MIN_FRACTION

    smp = make_sample(10005, 0, "0009")
    assert smp.orientation == 3
    mask = border_colour_page_mask(smp.image, PAGE_MASK_MIN_FRACTION)
    assert mask is not None and page_mask_is_portrait(mask)
    ys, xs = np.nonzero(mask)  # the page's nodes lie inside the mask's box
    inside = ((smp.grid_nodes[..., 0] > xs.min()) & (smp.grid_nodes[..., 0] < xs.max())
              & (smp.grid_nodes[..., 1] > ys.min()) & (smp.grid_nodes[..., 1] < ys.max()))
    assert inside.mean() > 0.9
    r = rectify_to_canonical(smp.image)
    err = _node_error_mm(r.nodes, smp.grid_nodes, smp.image.shape)
    assert r.orientation == 3 and err.mean() < 0.6 and r.confidence >= USABLE_CONFIDENCE, \
        (r.orientation, err.mean(), r.confidence, r.reason)


def test_border_colour_finds_no_page_in_a_scan(clean):
    """A page filling the image (a scan) has the border's colour: no region stands apart."""
    from ecgdigit.rectify.api import border_colour_page_mask

    assert border_colour_page_mask(clean.image, 0.12) is None


def test_ink_beyond_an_unread_gap_does_not_carry_a_trace_end_out_of_view():
    """A torn photo on a dark table (seed 10005 0010 #14): past the rows' ends and the paper after
    them, unread table, then a few boxes of table read as paper holding dark ink. That ink ended
    the rows' runs at the raster's edge, so only one row's end was seen and the template's time
    anchor stood, 7 boxes late (35 mm). The runs stop at the unread gap: three rows end together."""
    smp = make_sample(10005, 14, "0010")
    r = rectify_to_canonical(smp.image)
    err = _node_error_mm(r.nodes, smp.grid_nodes, smp.image.shape)
    assert r.orientation == 0 and err.mean() < 2.0, (err.mean(), r.confidence, r.reason)


def _clean_lattice(sample, a_boxes=1, b_boxes=1):
    """The exact lattice of an upright clean page (original pixels) with steps of several boxes."""
    from ecgdigit.rectify.classical import Lattice

    nodes = sample.grid_nodes
    o = nodes[20, 28]
    return Lattice(o, (nodes[20, 29] - o) * a_boxes, (nodes[21, 28] - o) * b_boxes, 1.0, True)


def test_two_box_lattice_step_is_divided(clean):
    """A lattice step spanning two boxes (moire / faint lines make its period the strongest) refines
    as well as the right one; the lines half-way between its steps give it away."""
    from ecgdigit.rectify.classical import WORK_PX_PER_BOX, _box_divisions, _grid_model

    for steps, expected in (((1, 1), (1, 1)), ((2, 1), (2, 1)), ((1, 2), (1, 2))):
        model, _, feat, _ = _grid_model(clean.image, _clean_lattice(clean, *steps), True, None, WORK_PX_PER_BOX, {})
        assert model is not None and model.found.sum() > 300
        assert _box_divisions(feat, model) == expected, steps


def test_square_families_repair_a_doubled_pitch(clean):
    """The two line families of a square grid have about equal pitch: a family found at twice the
    box is searched again near the other's pitch."""
    from ecgdigit.rectify import classical as C

    small = cv2.resize(clean.image, (1024, round(1024 * clean.image.shape[0] / clean.image.shape[1])),
                       interpolation=cv2.INTER_AREA)
    _, chroma = C._features(small)
    f = C._clip_at_percentile(chroma, C.CLIP_PCT[True])
    thetas, prof = C._angle_spectrum(f)
    box = 1024 / clean.image.shape[1] * np.linalg.norm(clean.grid_nodes[0, 1] - clean.grid_nodes[0, 0])
    vert = (0.0, *C._family(f, 0.0, (0.8 * box, 1.2 * box)))
    doubled = (np.pi / 2, *C._family(f, np.pi / 2, (1.8 * box, 2.2 * box)))
    assert abs(doubled[1] - 2 * box) < 0.1 * box  # the doubled family is a real period of the grid
    fams = C._square_families(f, [vert, doubled], thetas, prof)
    pitches = sorted(q[1] for q in fams)
    assert abs(pitches[0] - box) < 0.05 * box and abs(pitches[1] - box) < 0.05 * box, pitches


def test_scan_on_a_dark_lid_keeps_its_rows():
    """A colour scan on a dark scanner lid (the page found failing on bench seed 9600): the dark band
    along the page's edge was read as ink and matched a trace row, shifting the page by 5 rows; the
    ink is now read only where the grid shows."""
    smp = make_sample(9600, 2, "0003")
    assert smp.image[:5, :5].mean() < 80  # the lid around the page is dark
    r = rectify_to_canonical(smp.image)
    assert r.orientation == smp.orientation, r.reason
    err = _node_error_mm(r.nodes, smp.grid_nodes, smp.image.shape)
    assert err.mean() < 0.2, err.mean()
