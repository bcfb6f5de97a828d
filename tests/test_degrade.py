"""Degradations of the nine image types: the Warp must say exactly where page features land."""
import cv2
import numpy as np
import pytest

from ecgdigit.layout import apply_orientation
from ecgdigit.synth.degrade import IMAGE_TYPES, degrade, recipes
from ecgdigit.synth.degrade.warp import Orientation, dense_backward_map

PAGE_W, PAGE_H = 2200, 1700
DOT_R = 4


def dot_page(w=PAGE_W, h=PAGE_H, spacing=110, margin=60):
    """White page with black dots on a lattice; returns (page, dot centres (N, 2))."""
    page = np.full((h, w, 3), 255, np.uint8)
    xs = np.arange(margin, w - margin + 1, spacing)
    ys = np.arange(margin, h - margin + 1, spacing)
    centres = np.array([(x, y) for y in ys for x in xs], float)
    for x, y in centres:
        cv2.circle(page, (int(x) * 16, int(y) * 16), DOT_R * 16, (0, 0, 0), -1, cv2.LINE_AA, shift=4)
    return page, centres


@pytest.fixture(scope="module")
def page_and_dots():
    return dot_page()


_CACHE = {}


def degraded(page_and_dots, image_type, seed):
    """degrade() of the dot page, computed once per (type, seed) for the whole module."""
    key = (image_type, seed)
    if key not in _CACHE:
        _CACHE[key] = degrade(page_and_dots[0], image_type, np.random.default_rng(seed))
    return _CACHE[key]


def dot_offsets(image, points, radius):
    """For each point: (is a dark spot there, offset of the darkness centroid from the point)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    h, w = grey.shape
    win = int(np.ceil(radius * 2.2))
    found, offsets = [], []
    for x, y in points:
        xi, yi = int(round(x)), int(round(y))
        if not (win + 1 <= xi < w - win - 1 and win + 1 <= yi < h - win - 1):
            continue
        patch = grey[yi - win:yi + win + 1, xi - win:xi + win + 1]
        yy, xx = np.mgrid[-win:win + 1, -win:win + 1]
        ring = patch[np.hypot(xx, yy) > win - 1]
        paper = np.median(ring)
        dark = np.clip(paper - patch, 0, None) * (np.hypot(xx, yy) <= win - 1)
        centre_dark = paper - grey[yi, xi]
        found.append(centre_dark > 0.25 * max(paper - 0, 1))
        wsum = dark.sum()
        if wsum > 0:
            offsets.append(np.hypot((dark * (xx + xi - x)).sum() / wsum, (dark * (yy + yi - y)).sum() / wsum))
        else:
            offsets.append(np.inf)
    return np.array(found), np.array(offsets)


def output_scale(warp, points):
    """Output pixels per page pixel near the page centre."""
    c = np.mean(points, 0)
    q = warp.forward(np.array([c, c + [10, 0]]))
    return np.linalg.norm(q[1] - q[0]) / 10


@pytest.mark.parametrize("image_type", [t for t in IMAGE_TYPES])
def test_dots_land_where_the_warp_says(page_and_dots, image_type):
    page, centres = page_and_dots
    for seed in (3,) if image_type in ("0005", "0006", "0009", "0010") else (3, 4):
        d = degraded(page_and_dots, image_type, seed)
        pts = d.warp.forward(centres)
        scale = output_scale(d.warp, centres)
        found, off = dot_offsets(d.image, pts, DOT_R * scale)
        assert len(found) > 0.5 * len(centres), "most dots must be inside the image"
        # damage, stains and mould may hide a few dots; the rest must be dark and centred
        assert found.mean() > 0.85, (image_type, seed, found.mean())
        ok = off[found]
        # measured: medians 0.02-0.08 px, 80th percentiles <= 0.16 px
        assert np.median(ok) < 0.25, (image_type, seed, np.median(ok))
        assert np.percentile(ok, 80) < 0.4, (image_type, seed, np.percentile(ok, 80))


def test_a_misplaced_warp_fails_the_dot_check(page_and_dots):
    """The dot check above is sharp enough to see a 2 px error."""
    page, centres = page_and_dots
    d = degrade(page, "0003", np.random.default_rng(3))
    pts = d.warp.forward(centres)
    _, off_right = dot_offsets(d.image, pts, DOT_R)
    _, off_wrong = dot_offsets(d.image, pts + [2.0, 0.0], DOT_R)
    assert np.median(off_right) < 0.5 < 1.2 < np.median(off_wrong)


@pytest.mark.parametrize("image_type", ["0005", "0006", "0009", "0010"])
def test_forward_inverts_backward_and_the_dense_map_is_exact(page_and_dots, image_type):
    page, centres = page_and_dots
    d = degraded(page_and_dots, image_type, 3)
    w, h = d.warp.output_size
    rng = np.random.default_rng(0)
    q = rng.uniform([0, 0], [w - 1, h - 1], (3000, 2))
    p = d.warp.backward(q)
    inside = (p[:, 0] > 0) & (p[:, 0] < page.shape[1] - 1) & (p[:, 1] > 0) & (p[:, 1] < page.shape[0] - 1)
    assert inside.sum() > 300
    assert np.abs(d.warp.forward(p[inside]) - q[inside]).max() < 1e-3
    # the map the image was remapped with (bilinear upsampling of exact nodes) vs the exact chain
    steps = [s for s in d.warp.steps if not isinstance(s, Orientation)]
    orient = d.warp.steps[-1]
    cw, ch = orient.width, orient.height
    mapx, mapy = dense_backward_map(steps, cw, ch, 8)[:2]
    up = rng.uniform([0, 0], [cw - 1, ch - 1], (3000, 2)).round()
    exact = d.warp.backward(orient.forward(up))
    got = np.stack([mapx[up[:, 1].astype(int), up[:, 0].astype(int)], mapy[up[:, 1].astype(int), up[:, 0].astype(int)]], 1)
    err = np.abs(got - exact).max(1)
    near_page = (exact[:, 0] > -50) & (exact[:, 0] < page.shape[1] + 50) & (exact[:, 1] > -50) & (exact[:, 1] < page.shape[0] + 50)
    assert err[near_page].max() < 0.03  # measured <= 0.013 px


def test_same_seed_same_bytes_other_seed_other_bytes(page_and_dots):
    page, _ = page_and_dots
    for t in ("0004", "0006", "0010", "0011"):
        a = degraded(page_and_dots, t, 3)
        b = degrade(page, t, np.random.default_rng(3))
        c = degrade(page, t, np.random.default_rng(12))
        assert a.image.tobytes() == b.image.tobytes()
        assert a.orientation == b.orientation
        assert np.allclose(a.warp.forward(np.array([[100.0, 200.0]])), b.warp.forward(np.array([[100.0, 200.0]])))
        assert a.image.shape != c.image.shape or a.image.tobytes() != c.image.tobytes()


def test_output_sizes_and_types(page_and_dots):
    page, _ = page_and_dots
    clean = degrade(page, "0001", np.random.default_rng(0))
    assert clean.image is page or np.array_equal(clean.image, page)
    assert clean.orientation == 0
    assert np.allclose(clean.warp.forward(np.array([[12.5, 99.0]])), [[12.5, 99.0]])
    for t in IMAGE_TYPES[1:]:
        d = degraded(page_and_dots, t, 3)
        assert d.image.dtype == np.uint8 and d.image.ndim == 3 and d.image.shape[2] == 3
        assert d.warp.output_size == (d.image.shape[1], d.image.shape[0])
        assert d.orientation == d.warp.orientation
        if t in ("0003", "0004", "0011", "0012"):  # scans: about 1652 px high (SPEC §1)
            assert 1640 <= min(d.image.shape[:2]) <= 1666 and max(d.image.shape[:2]) > 2000
        else:
            assert d.image.shape[:2] in ((3024, 4032), (4032, 3024))
        if t in ("0004", "0012"):  # black-and-white scans
            assert np.array_equal(d.image[..., 0], d.image[..., 1]) and np.array_equal(d.image[..., 1], d.image[..., 2])
        else:
            assert not np.array_equal(d.image[..., 0], d.image[..., 2])


@pytest.mark.parametrize("code", range(8))
def test_orientation_step_matches_layout_apply_orientation(code):
    w, h = 37, 23
    img = np.zeros((h, w), np.uint8)
    pts = np.array([[3.0, 5.0], [30.0, 2.0], [11.0, 20.0]])
    for k, (x, y) in enumerate(pts):
        img[int(y), int(x)] = 50 + 50 * k
    turned = apply_orientation(img, code)
    step = Orientation(code, w, h)
    assert step.output_size == (turned.shape[1], turned.shape[0])
    q = step.forward(pts)
    for k, (x, y) in enumerate(q):
        assert turned[int(round(y)), int(round(x))] == 50 + 50 * k
    assert np.allclose(step.backward(q), pts)


def test_turned_photo_is_turned_like_its_warp(page_and_dots, monkeypatch):
    monkeypatch.setattr(recipes, "P_TURN_PHOTO", 1.0)
    page, centres = page_and_dots
    d = degrade(page, "0005", np.random.default_rng(5))
    assert d.orientation in (1, 2, 3) and d.warp.orientation == d.orientation
    found, off = dot_offsets(d.image, d.warp.forward(centres), DOT_R * output_scale(d.warp, centres))
    assert found.mean() > 0.85 and np.median(off[found]) < 1.0


def test_small_pages_work(page_and_dots):
    page, centres = dot_page(1100, 850, spacing=70, margin=40)
    for t in ("0003", "0005"):
        d = degrade(page, t, np.random.default_rng(2))
        scale = output_scale(d.warp, centres)
        found, off = dot_offsets(d.image, d.warp.forward(centres), DOT_R * scale)
        assert found.mean() > 0.85 and np.median(off[found]) < 0.35 * max(scale, 1)


def test_bad_input_is_refused_with_a_clear_message(page_and_dots):
    page, _ = page_and_dots
    with pytest.raises(ValueError, match="0001.*0012"):
        degrade(page, "0002", np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8"):
        degrade(page.astype(np.float32), "0003", np.random.default_rng(0))


def test_tiny_pages_do_not_break_any_type():
    page, centres = dot_page(330, 255, spacing=40, margin=25)
    for t in IMAGE_TYPES:
        d = degrade(page, t, np.random.default_rng(9))
        assert d.image.dtype == np.uint8 and d.image.shape[2] == 3
        q = d.warp.forward(centres)
        assert np.all(np.isfinite(q))
        assert np.abs(d.warp.backward(q) - centres).max() < 1e-3


def test_noise_works_beyond_the_noise_bank():
    from ecgdigit.synth.degrade import effects
    img = np.full((8, effects._NOISE_BANK_SIDE + 10, 3), 128, np.uint8)
    out = effects.add_noise(img, np.random.default_rng(0), 3.0)
    assert out.shape == img.shape and 1.5 < out.astype(float).std() < 4.5


def test_paper_deformation_jacobian_and_inverse():
    from ecgdigit.synth.degrade.warp import Displacement, Fold, Ridge, Wave
    disp = Displacement([Wave((3.0, -2.0), (1 / 900, 1 / 1400), 0.3),
                         Ridge((1000.0, 800.0), 0.4, 30.0, 400.0, 5.0),
                         Fold((1100.0, 850.0), 1.5, 25.0, 0.02)], (-200, -200, 2400, 1900))
    x = np.random.default_rng(0).uniform([0, 0], [2200, 1700], (5000, 2))
    _, jac = disp.value_and_jacobian(x)
    h = 1e-4
    for c, e in enumerate(([h, 0.0], [0.0, h])):
        numeric = (disp.displacement(x + e) - disp.displacement(x - e)) / (2 * h)
        assert np.abs(jac[:, :, c] - numeric).max() < 1e-6
    q = disp.forward(x)
    assert np.abs(disp.backward(q) - x).max() < 1e-5
    assert np.abs(q - x).max() > 1.0  # it does move points
