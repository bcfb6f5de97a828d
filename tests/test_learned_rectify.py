"""Learned rectifier (stages 0 + 1): targets, training steps, checkpoints, decode + fit, end to end."""
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ecgdigit import layout  # noqa: E402
from ecgdigit.errors import InputError  # noqa: E402
from ecgdigit.nets.unet import load_model  # noqa: E402
from ecgdigit.rectify import learned  # noqa: E402
from ecgdigit.rectify.api import Rectification  # noqa: E402
from ecgdigit.synth.sample import make_sample  # noqa: E402
from ecgdigit.train import stage01  # noqa: E402
from ecgdigit.train.loop import TrainConfig, _build_model, _loss, train  # noqa: E402

SIZE = 256
TINY = dict(backbone="test_resnet", image_size=SIZE, decoder_channels=(16, 16, 8, 8, 8), workers=0)


def _source_item(seed, index, image_type, code=None):
    s = make_sample(seed, index, image_type)
    src = {"image": s.image, "keypoints": s.keypoints, "grid_nodes": s.grid_nodes, "orientation": s.orientation,
           "image_type": image_type}
    if code is not None and code != s.orientation:  # turn the sample (image and labels) to `code`
        uw, uh = stage01.upright_size(s.image.shape, s.orientation)
        up = layout.undo_orientation(s.image, s.orientation)
        for key in ("keypoints", "grid_nodes"):
            src[key] = stage01.orient_points(stage01.unorient_points(src[key], s.orientation, uw, uh), code, uw, uh)
        src.update(image=layout.apply_orientation(up, code), orientation=code)
    return src


def _overfit_losses(stage, dataset, steps=8):
    torch.manual_seed(0)
    model = _build_model(TrainConfig(stage=stage, **TINY))
    batch = stage01.collate_stage01([dataset[0], dataset[1]])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(steps):
        loss, parts = _loss(TrainConfig(stage=stage), model(batch["image"]), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        assert all(np.isfinite(v) for v in parts.values())
    return losses


def test_stage0_targets_follow_the_orientation_and_loss_falls():
    src = stage01.SyntheticSource(2, seed=5, types=("0001",))
    ds = stage01.Stage0Dataset(src, SIZE)
    item = ds[0]
    assert item["image"].shape == (3, SIZE, SIZE) and 0 <= int(item["orientation"]) < 8
    assert bool(item["kp_valid"].all())
    # the marker of lead I sits on its label node: check it against the turned grid nodes
    a = stage01.stage0_arrays(src[0], SIZE, code=3)
    b = stage01.stage0_arrays(src[0], SIZE, code=0)
    assert a["orientation"] == 3 and b["orientation"] == 0
    h, w = np.array(b["valid_size"])[::-1]
    up = stage01.unorient_points(a["keypoints"], 3, int(w), int(h))
    assert np.allclose(up, b["keypoints"], atol=0.6)
    losses = _overfit_losses(0, ds)
    assert losses[-1] < 0.85 * losses[0], losses


def test_stage1_targets_and_loss_falls():
    src = stage01.SyntheticSource(2, seed=6, types=("0001",))
    ds = stage01.Stage1Dataset(src, SIZE)
    item = ds[0]
    h1 = stage01.stage1_height(SIZE)
    assert item["image"].shape == (3, h1, SIZE)
    assert item["heat"].shape == (1, h1 // 2, SIZE // 2) and item["node_index"].shape == (2, h1 // 2, SIZE // 2)
    assert float(item["heat"].max()) > 0.9 and 0.5 < float(item["index_valid"].mean()) < 1.0
    # the index map is the node index at the nodes
    nodes = item["nodes"].numpy() / 2 - 0.25  # input px -> output px at reduction 2
    j, i = 20, 30
    x, y = np.rint(nodes[j, i]).astype(int)
    index = stage01.target_to_index(item["node_index"][:, y, x].numpy())
    assert abs(index[0] - j) < 0.6 and abs(index[1] - i) < 0.6
    # the cache keeps compact arrays (uint8 image) and gives back the same item on every fetch
    cached = stage01.Stage1Dataset(src, SIZE, cache_items=True)
    first, again = cached[0], cached[0]
    assert cached.cache[0]["image"].dtype == np.uint8 and cached.cache[0]["heat"].dtype == np.float16
    for got in (first, again):
        assert torch.equal(got["image"], item["image"]) and torch.equal(got["node_index"], item["node_index"])
        assert torch.equal(got["index_valid"], item["index_valid"]) and torch.equal(got["nodes"], item["nodes"])
        assert float((got["heat"] - item["heat"]).abs().max()) < 1e-3 and got["heat"].dtype == torch.float32
    losses = _overfit_losses(1, ds)
    assert losses[-1] < 0.93 * losses[0] and np.all(np.diff(losses) < 0), losses


def test_decode_and_fit_recover_the_nodes_from_perfect_maps():
    src = _source_item(3, 0, "0005")
    a = stage01.stage1_arrays(src, 1024)
    heat = np.clip(a["heat"], 1e-4, 1 - 1e-4)
    out = np.concatenate([np.log(heat / (1 - heat))[None], stage01.index_to_target(a["index"])])
    j, i, xy, score = learned.decode_nodes(out)
    assert len(j) > 1500 and len(set(zip(j.tolist(), i.tolist()))) == len(j)
    fit = learned.fit_node_field(j, i, stage01.scale_points(xy, 2, 2))
    err = stage01.node_errors_mm(fit.nodes, a["nodes"], 1024, 768)
    assert fit.field.shape == (layout.LETTER.grid_horizontal_lines + 4, layout.LETTER.grid_vertical_lines + 4, 2)
    assert np.isfinite(fit.field).all() and err.mean() < 0.15, err.mean()
    # hidden nodes are modelled, not zeroed: drop a block of detections and fit again
    keep = ~((j >= 10) & (j < 20) & (i >= 20) & (i < 35))
    fit2 = learned.fit_node_field(j[keep], i[keep], stage01.scale_points(xy[keep], 2, 2))
    hole = stage01.node_errors_mm(fit2.nodes[10:20, 20:35], a["nodes"][10:20, 20:35], 1024, 768)
    assert not fit2.found[10:20, 20:35].any() and hole.mean() < 0.5, hole.mean()
    assert learned.fit_node_field(j[:5], i[:5], xy[:5]) is None
    # biased index maps (0.985 x index + 0.3 node): rounding alone leaves many nodes unnamed or
    # misnamed; naming again by the fitted grid's nearest node recovers them
    biased = out.copy()
    biased[1:] = stage01.index_to_target(a["index"] * 0.985 + 0.3)
    jb, ib, xyb, _ = learned.decode_nodes(biased)
    rounded = learned.fit_node_field(jb, ib, stage01.scale_points(xyb, 2, 2))
    err_rounded = stage01.node_errors_mm(rounded.nodes, a["nodes"], 1024, 768)
    pxy, jv, iv, sc = learned.decode_peaks(biased)
    fit3, n_named = learned.fit_peaks(stage01.scale_points(pxy, 2, 2), jv, iv, sc)
    err3 = stage01.node_errors_mm(fit3.nodes, a["nodes"], 1024, 768)
    assert n_named > len(jb) + 300 and err3.mean() < 0.05 and err3.mean() < 0.5 * err_rounded.mean(), \
        (n_named, len(jb), err3.mean(), err_rounded.mean())


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Stage-0 and stage-1 models trained one step each, in a weights folder: stage 0 by the loop
    directly, stage 1 through notebooks/train.ipynb with `-p stage 1` (papermill)."""
    import papermill

    root = tmp_path_factory.mktemp("weights")
    cfg = TrainConfig(stage=0, epochs=1, samples_per_epoch=2, batch_size=2, lr=1e-3, val_samples=1,
                      types=("0001",), out_dir=str(root / "stage0"), **TINY)
    res = train(cfg, progress=False)
    assert res["steps"] == 1 and np.isfinite(res["best_score"])
    repo = Path(__file__).resolve().parents[1]
    papermill.execute_notebook(
        str(repo / "notebooks" / "train.ipynb"), str(root / "train_stage1.ipynb"),
        parameters=dict(stage=1, backbone="test_resnet", epochs=1, samples_per_epoch=2, batch_size=2,
                        image_size=SIZE, workers=0, val_samples=1, out_dir=str(root / "stage1"), amp=False,
                        types="0001", show_examples=True, lr=1e-3, decoder_channels="16,16,8,8,8",
                        cache_items=True, threads=1, time_limit_s=600.0),
        cwd=str(repo), kernel_name="python3", progress_bar=False)
    assert "nodes named" in (root / "train_stage1.ipynb").read_text()
    # the notebook's CPU parameters reach the run's config
    run = json.loads((root / "stage1" / "train_config.json").read_text())
    assert run["decoder_channels"] == [16, 16, 8, 8, 8] and run["cache_items"] and run["threads"] == 1
    assert run["time_limit_s"] == 600.0
    return root


def test_checkpoints_load_back_with_their_config(tiny_weights):
    m0 = load_model(tiny_weights / "stage0" / "best.pt")
    m1 = load_model(tiny_weights / "stage1" / "best.pt")
    assert m0.config.extra["stage"] == 0 and m0.config.extra["image_size"] == SIZE and m0.config.n_aux_classes == 8
    assert m1.config.extra["stage"] == 1 and m1.config.n_classes == 3
    with torch.no_grad():
        logits, orient = m0(torch.rand(1, 3, SIZE, SIZE))
        assert logits.shape == (1, 13, SIZE // 4, SIZE // 4) and orient.shape == (1, 8)
        assert m1(torch.rand(1, 3, 192, SIZE)).shape == (1, 3, 96, SIZE // 2)
    assert (tiny_weights / "stage1" / "log.csv").is_file()


def test_rectify_learned_end_to_end_with_tiny_weights(tiny_weights):
    learned.clear_model_cache()
    image = make_sample(11, 0, "0003").image
    rect = learned.rectify_learned(image, weights=tiny_weights)
    assert isinstance(rect, Rectification) and rect.method == "learned"
    assert rect.canonical.shape == (layout.CANONICAL_HEIGHT, layout.CANONICAL_WIDTH, 3)
    assert rect.canonical.dtype == np.uint8
    assert rect.map_x.shape == rect.map_y.shape == (layout.CANONICAL_HEIGHT, layout.CANONICAL_WIDTH)
    assert np.isfinite(rect.map_x).all() and np.isfinite(rect.map_y).all()
    assert 0.0 <= rect.confidence <= 1.0 and 0 <= rect.orientation < 8
    assert rect.nodes.shape == (44, 57, 2) and np.isfinite(rect.nodes).all()
    assert (rect.confidence > 0) or rect.reason  # an untrained model may reject, but says why
    # models are cached per process
    assert learned.load_stage_model(tiny_weights, 1) is learned.load_stage_model(tiny_weights, 1)
    # a known orientation overrides stage 0's choice
    assert learned.rectify_learned(image, weights=tiny_weights, orientation=2).orientation == 2
    with pytest.raises(InputError, match="orientation"):
        learned.rectify_learned(image, weights=tiny_weights, orientation=9)
    # too small / grayscale / 16-bit: a flag or a result, never a crash
    small = learned.rectify_learned(np.full((50, 50, 3), 255, np.uint8), weights=tiny_weights)
    assert small.confidence == 0.0 and "too small" in small.reason
    gray16 = (image[..., 0].astype(np.uint16) * 257)
    assert 0.0 <= learned.rectify_learned(gray16, weights=tiny_weights).confidence <= 1.0


def _rectify_with_perfect_stages(weights, monkeypatch, src, index_shift=(0, 0), **options):
    """rectify_learned with the networks replaced by their exact targets (stage-1 index maps off
    by `index_shift` whole boxes)."""
    rgb = src["image"]
    size1 = SIZE * 2

    def oracle_stage0(model, image):
        p = np.zeros(8)
        p[src["orientation"]] = 1.0
        return learned.Stage0Output(src["orientation"], p, src["keypoints"], np.zeros(13))

    def oracle_forward(model, canvas):
        _, _, from_image = learned.stage1_canvas(rgb, src["orientation"], size1)
        nodes_o = stage01.scale_points(from_image(src["grid_nodes"]), 0.5, 0.5)
        ow, oh = canvas.shape[1] // 2, canvas.shape[0] // 2
        heat = np.clip(stage01.node_heatmap(nodes_o, ow, oh), 1e-4, 1 - 1e-4)
        index, _ = stage01.index_maps(nodes_o, ow, oh)
        index += np.array(index_shift, dtype=np.float32)[:, None, None]
        return np.concatenate([np.log(heat / (1 - heat))[None], stage01.index_to_target(index)])

    model1 = learned.load_stage_model(weights, 1)
    monkeypatch.setitem(model1.config.extra, "image_size", size1)
    monkeypatch.setattr(learned, "run_stage0", oracle_stage0)
    monkeypatch.setattr(learned, "_forward", oracle_forward)
    return learned.rectify_learned(rgb, weights=weights, **options)


def test_rectify_learned_geometry_with_perfect_stage_outputs(tiny_weights, monkeypatch):
    """The decode -> fit -> original pixels -> dense map -> one remap chain, on a turned photo, with
    the networks replaced by their exact targets: the nodes come back within a fraction of a mm."""
    src = _source_item(4, 0, "0005", code=3)
    rect = _rectify_with_perfect_stages(tiny_weights, monkeypatch, src)
    rgb = src["image"]
    assert rect.orientation == 3 and rect.confidence > 0.3, rect.reason
    err = stage01.node_errors_mm(rect.nodes, src["grid_nodes"], rgb.shape[1], rgb.shape[0])
    assert err.mean() < 0.5, err.mean()
    # the dense map sends canonical node positions to the image nodes
    jj, ii = 25, 30
    cx, cy = layout.grid_node_canonical(jj, ii)
    mapped = np.array([rect.map_x[int(round(cy)), int(round(cx))], rect.map_y[int(round(cy)), int(round(cx))]])
    px_per_mm = stage01.local_px_per_mm(src["grid_nodes"])[jj, ii]
    assert np.linalg.norm(mapped - src["grid_nodes"][jj, ii]) / px_per_mm < 0.6


def test_layout_check_corrects_whole_box_index_shifts(tiny_weights, monkeypatch):
    src = _source_item(7, 1, "0004", code=2)
    rgb = src["image"]
    plain = _rectify_with_perfect_stages(tiny_weights, monkeypatch, src, (1, -1), layout_check=False)
    fixed = _rectify_with_perfect_stages(tiny_weights, monkeypatch, src, (1, -1))
    err_plain = stage01.node_errors_mm(plain.nodes, src["grid_nodes"], rgb.shape[1], rgb.shape[0])
    err_fixed = stage01.node_errors_mm(fixed.nodes, src["grid_nodes"], rgb.shape[1], rgb.shape[0])
    assert err_plain.mean() > 4.0  # one box off in both directions
    assert err_fixed.mean() < 0.3 and "page layout" in fixed.reason, (err_fixed.mean(), fixed.reason)


def test_missing_weights_name_the_path(tmp_path):
    with pytest.raises(InputError, match="stage0"):
        learned.rectify_learned(np.zeros((300, 400, 3), np.uint8), weights=tmp_path)
    with pytest.raises(InputError, match="nowhere"):
        learned.rectify_learned(np.zeros((300, 400, 3), np.uint8), weights=tmp_path / "nowhere")
    (tmp_path / "stage0").mkdir()
    with pytest.raises(InputError, match="stage-1"):
        learned.stage_checkpoint(tmp_path, 1)


def test_folder_source_from_ecgdigit_synth(tmp_path):
    from ecgdigit.cli import main

    data = tmp_path / "data"
    assert main(["synth", "--out", str(data), "--records", "1", "--types", "0003", "--split", "train",
                 "--seed", "8", "--fs", "250"]) == 0
    src = stage01.FolderSource(data)
    assert len(src) == 1
    item = src[0]
    assert item["grid_nodes"].shape == (44, 57, 2) and item["image_type"] == "0003"
    ds0 = stage01.Stage0Dataset(src, SIZE)
    ds1 = stage01.Stage1Dataset(src, SIZE)
    assert ds0[0]["image"].shape == (3, SIZE, SIZE) and bool(ds0[0]["kp_valid"].any())
    assert float(ds1[0]["heat"].max()) > 0.9
    with pytest.raises(InputError, match="labels"):
        stage01.FolderSource(tmp_path)


def test_digitizer_uses_the_learned_rectifier_of_a_weights_folder(tiny_weights, monkeypatch, tmp_path):
    """A weights folder with stage-0 + stage-1 weights (no stage 2) -> learned rectifier + classical
    traces; with the networks replaced by their exact targets the record reads the photo well."""
    from ecgdigit.layout import default_lead_lengths
    from ecgdigit.pipeline import Digitizer
    from ecgdigit.trace.evaluation import score_records, truth_record

    assert Digitizer(weights=tiny_weights).rectify_method == "learned"
    assert Digitizer(weights=tiny_weights, rectify_method="classical").rectify_method == "classical"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="stage-0 and stage-1"):
        Digitizer(weights=empty, rectify_method="learned")
    with pytest.raises(InputError, match="no weights"):
        Digitizer(weights=empty)

    sample = make_sample(4, 0, "0005")
    src = _source_item(4, 0, "0005", code=3)
    rect = _rectify_with_perfect_stages(tiny_weights, monkeypatch, src)
    monkeypatch.setattr(learned, "rectify_learned", lambda image, weights=None, **kw: rect)
    fs = float(sample.fs)
    lengths = default_lead_lengths(fs)
    result = Digitizer(weights=tiny_weights)(src["image"], fs=fs, lead_lengths=lengths)
    assert result.rectification.method == "learned" and result.tracer == "classical"
    truth = truth_record(sample.signals.astype(np.float64), fs, lengths)
    assert score_records([truth], [result.record], [fs]).score > 10


def test_unsure_stage0_lets_the_page_layout_choose_the_orientation(tiny_weights, monkeypatch):
    """Stage 0 prefers a wrong code (p 0.45 for a 180-degree turn, 0.30 upright, 0.25 mirrored): stage 1
    runs under each of the three, naming nodes by position as a network would on a turned canvas,
    and the page layout picks the upright reading."""
    src = _source_item(8, 0, "0004", code=0)
    rgb = src["image"]
    size1 = SIZE * 2
    p = np.zeros(8)
    p[[2, 0, 4]] = 0.45, 0.30, 0.25

    def unsure_stage0(model, image):
        return learned.Stage0Output(2, p, src["keypoints"], np.zeros(13))

    def positional_forward(model, canvas):
        code = next(c for c in (2, 0, 4) if np.array_equal(learned.stage1_canvas(rgb, c, size1)[0], canvas))
        nodes = learned.stage1_canvas(rgb, code, size1)[2](src["grid_nodes"])
        if nodes[0, 0, 0] > nodes[0, -1, 0]:  # name by position: node (0, 0) is the top-left one
            nodes = nodes[:, ::-1]
        if nodes[0, 0, 1] > nodes[-1, 0, 1]:
            nodes = nodes[::-1]
        nodes_o = stage01.scale_points(np.ascontiguousarray(nodes), 0.5, 0.5)
        ow, oh = canvas.shape[1] // 2, canvas.shape[0] // 2
        heat = np.clip(stage01.node_heatmap(nodes_o, ow, oh), 1e-4, 1 - 1e-4)
        index, _ = stage01.index_maps(nodes_o, ow, oh)
        return np.concatenate([np.log(heat / (1 - heat))[None], stage01.index_to_target(index)])

    model1 = learned.load_stage_model(tiny_weights, 1)
    monkeypatch.setitem(model1.config.extra, "image_size", size1)
    monkeypatch.setattr(learned, "run_stage0", unsure_stage0)
    monkeypatch.setattr(learned, "_forward", positional_forward)
    rect = learned.rectify_learned(rgb, weights=tiny_weights)
    assert rect.orientation == 0 and "chosen by the page layout" in rect.reason, rect.reason
    err = stage01.node_errors_mm(rect.nodes, src["grid_nodes"], rgb.shape[1], rgb.shape[0])
    assert err.mean() < 0.5, err.mean()
    # without the layout check stage 0's most probable code stands
    assert learned.rectify_learned(rgb, weights=tiny_weights, layout_check=False).orientation == 2


def test_synthetic_training_pages_are_fresh_each_epoch():
    """Epoch e draws records e * length .. of the run (the engine's exact labels, never the same pool twice)."""
    ds = stage01.Stage1Dataset(stage01.SyntheticSource(2, seed=3, types=("0001",)), size=128)
    first = ds[1]
    ds.set_epoch(1)
    second = ds[1]
    assert not torch.equal(first["image"], second["image"])  # (0001 pages share one grid: same heatmap)
    longer = stage01.Stage1Dataset(stage01.SyntheticSource(4, seed=3, types=("0001",)), size=128)
    assert torch.equal(second["image"], longer[3]["image"])  # record 1 * 2 + 1
    ds.set_epoch(0)
    assert torch.equal(ds[1]["image"], first["image"])
    # stage 0 draws its orientation afresh with the page
    s0 = stage01.Stage0Dataset(stage01.SyntheticSource(8, seed=3, types=("0001",)), size=128)
    codes0 = [int(s0[k]["orientation"]) for k in range(8)]
    s0.set_epoch(1)
    assert [int(s0[k]["orientation"]) for k in range(8)] != codes0
