"""`ecgdigit demo`: runs end to end and shows what the metric forgives and what it punishes."""
from ecgdigit.cli import main


def test_demo_runs_and_teaches(tmp_path, capsys):
    assert main(["demo", "--metric-lesson", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "score:" in printed and "ecgdigit score --solution" in printed
    for name in ("solution.csv", "submission.csv", "per_image.csv", "snr_histogram.png"):
        assert (tmp_path / name).stat().st_size > 0
    import pandas as pd

    snr = pd.read_csv(tmp_path / "per_image.csv").set_index("error")["snr_db"]
    assert snr["exact copy"] == 60.0  # 10 log10 of the 1e6 cap
    assert snr["baseline offset +0.4 mV"] > 59  # offsets are forgiven
    assert snr["gain error 5%"] < 30  # amplitude errors are not
    assert snr["time scale error 1%"] < snr["time shift 60 ms"]  # scale errors cost more than shifts


def test_demo_end_to_end_on_one_type(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--types", "0001", "--records", "1"]) == 0
    printed = capsys.readouterr().out
    assert "0001" in printed and "score:" in printed and "s per image" in printed
    assert len(list((tmp_path / "overlays").glob("*_overlay.png"))) == 1
    assert (tmp_path / "submission.csv").stat().st_size > 0
