"""Competition folders and files: train/test CSVs, ground-truth records, submissions, solutions.

Layouts (SPEC §1):
  train.csv (id, fs, sig_len), train/{id}/{id}.csv (12 lead columns, NaN where not plotted),
  train/{id}/{id}-{type}.png; test.csv (id, lead, fs, number_of_rows), test/{id}.png.
A record in memory is a dict lead -> 1-D float array (mV) holding the samples a submission needs.
Submission ids are "{image}_{row}_{lead}" with row restarting at 0 for every lead.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from ecgdigit.errors import InputError, SubmissionError
from ecgdigit.layout import LEADS, RECORD_SECONDS, default_lead_lengths

PathLike = Union[str, os.PathLike]
Record = Dict[str, np.ndarray]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
IMAGE_TYPES = ("0001", "0003", "0004", "0005", "0006", "0009", "0010", "0011", "0012")

TRAIN_COLUMNS = ("id", "fs", "sig_len")
TEST_COLUMNS = ("id", "lead", "fs", "number_of_rows")


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
def _read_table(path: PathLike, what: str, columns: Sequence[str], dtype=None) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype=dtype)
    except Exception as exc:  # pandas raises many kinds; the user needs the file and the reason
        raise InputError(f"cannot read {what} {path}: {exc}") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(map(str, df.columns))})")
    return df


def read_train_csv(path: PathLike) -> pd.DataFrame:
    """train.csv: one row per record (id as string, fs, sig_len)."""
    df = _read_table(path, "train.csv", TRAIN_COLUMNS, dtype={"id": str})
    bad = df["sig_len"] != (df["fs"] * RECORD_SECONDS).round().astype(int)
    if bad.any():
        row = df[bad].iloc[0]
        raise InputError(f"{path}: record {row['id']} has sig_len {row['sig_len']} != 10 * fs ({row['fs']})")
    return df


def read_test_csv(path: PathLike) -> pd.DataFrame:
    """test.csv: one row per (image id, lead) with fs and number_of_rows."""
    df = _read_table(path, "test.csv", TEST_COLUMNS, dtype={"id": str, "lead": str})
    unknown = ~df["lead"].isin(LEADS)
    if unknown.any():
        raise InputError(f"{path}: unknown lead {df.loc[unknown, 'lead'].iloc[0]!r}")
    if (df["number_of_rows"] <= 0).any():
        raise InputError(f"{path}: number_of_rows must be positive")
    return df


def read_record_csv(path: PathLike) -> pd.DataFrame:
    """Ground-truth record train/{id}/{id}.csv: 12 lead columns in mV, NaN where not plotted."""
    df = _read_table(path, "record CSV", LEADS)
    return df[list(LEADS)].astype(np.float64)


def record_segments(record_df: pd.DataFrame) -> Record:
    """The plotted (non-NaN) samples of each lead of a ground-truth record."""
    return {lead: record_df[lead].to_numpy()[np.isfinite(record_df[lead].to_numpy())] for lead in LEADS}


@dataclass(frozen=True)
class ImageEntry:
    image_id: str  # the id used in submission rows ("{record}" for test, "{record}-{type}" for train)
    record_id: str
    image_type: Optional[str]  # "0001".. for train images, None for test images
    path: Path


def find_competition_split(root: PathLike) -> str:
    """'test' if `root` holds test.csv + test/, 'train' if train.csv + train/, else InputError."""
    root = Path(root)
    if (root / "test.csv").is_file() and (root / "test").is_dir():
        return "test"
    if (root / "train.csv").is_file() and (root / "train").is_dir():
        return "train"
    raise InputError(f"{root}: not a competition folder (expected test.csv + test/ or train.csv + train/)")


def list_test_images(root: PathLike, test_df: Optional[pd.DataFrame] = None) -> List[ImageEntry]:
    """The images a test folder's test.csv asks for, in test.csv order; missing files are kept
    (path does not exist) so that callers can fall back and report them."""
    root = Path(root)
    test_df = read_test_csv(root / "test.csv") if test_df is None else test_df
    entries = []
    for image_id in pd.unique(test_df["id"].astype(str)):
        path = root / "test" / f"{image_id}.png"
        if not path.exists():  # be lenient with the extension of user-made folders
            alt = [p for p in (root / "test").glob(f"{image_id}.*") if p.suffix.lower() in IMAGE_SUFFIXES]
            path = alt[0] if alt else path
        entries.append(ImageEntry(image_id, image_id, None, path))
    return entries


def list_train_images(root: PathLike, types: Optional[Iterable[str]] = None) -> List[ImageEntry]:
    """Every image train/{id}/{id}-{type}.* of the records in train.csv (optionally some types)."""
    root = Path(root)
    train = read_train_csv(root / "train.csv")
    wanted = set(types) if types else None
    entries = []
    for record_id in train["id"].astype(str):
        folder = root / "train" / record_id
        if not folder.is_dir():
            raise InputError(f"{folder}: record folder listed in train.csv is missing")
        for path in sorted(folder.iterdir()):
            stem = path.stem
            if path.suffix.lower() not in IMAGE_SUFFIXES or not stem.startswith(record_id + "-"):
                continue
            image_type = stem[len(record_id) + 1:]
            if wanted is None or image_type in wanted:
                entries.append(ImageEntry(f"{record_id}-{image_type}", record_id, image_type, path))
    return entries


# ---------------------------------------------------------------------------------------------
# Expected rows, submissions, solutions
# ---------------------------------------------------------------------------------------------
def make_ids(image_id: str, lead: str, n_rows: int) -> np.ndarray:
    return np.char.add(f"{image_id}_", np.char.add(np.arange(n_rows).astype(str), f"_{lead}"))


def test_rows_for_image(image_id: str, fs: float, lead_lengths: Optional[Mapping[str, int]] = None) -> pd.DataFrame:
    """test.csv rows for one image: lead II holds 10*fs rows, every other lead a 2.5 s segment
    (or the counts in `lead_lengths`)."""
    lengths = default_lead_lengths(fs) if lead_lengths is None else lead_lengths
    rows = [(str(image_id), lead, fs, int(lengths[lead])) for lead in LEADS]
    return pd.DataFrame(rows, columns=list(TEST_COLUMNS))


def expected_lengths(test_df: pd.DataFrame) -> Dict[str, Dict[str, int]]:
    """image id -> lead -> number_of_rows, as test.csv asks."""
    out: Dict[str, Dict[str, int]] = {}
    for image_id, lead, n in zip(test_df["id"].astype(str), test_df["lead"], test_df["number_of_rows"]):
        out.setdefault(image_id, {})[lead] = int(n)
    return out


def expected_submission_ids(test_df: pd.DataFrame) -> pd.Series:
    """All row ids a submission for `test_df` must contain, in test.csv order."""
    parts = [make_ids(str(i), lead, int(n)) for i, lead, n in
             zip(test_df["id"], test_df["lead"], test_df["number_of_rows"])]
    return pd.Series(np.concatenate(parts) if parts else np.array([], dtype=str), name="id")


def build_submission(test_df: pd.DataFrame, predictions: Mapping[str, Record]) -> pd.DataFrame:
    """Submission rows (id, value) for every (image, lead) of test.csv from per-image records.

    `predictions[image_id][lead]` must hold exactly number_of_rows values; raises SubmissionError
    naming the image and lead otherwise.
    """
    ids, values = [], []
    for image_id, lead, n in zip(test_df["id"].astype(str), test_df["lead"], test_df["number_of_rows"]):
        if image_id not in predictions:
            raise SubmissionError(f"no prediction for image {image_id}")
        record = predictions[image_id]
        if lead not in record:
            raise SubmissionError(f"image {image_id}: no prediction for lead {lead}")
        v = np.asarray(record[lead], dtype=np.float64).ravel()
        if len(v) != int(n):
            raise SubmissionError(f"image {image_id}: lead {lead} has {len(v)} values, test.csv asks for {int(n)}")
        ids.append(make_ids(image_id, lead, int(n)))
        values.append(v)
    sub = pd.DataFrame({"id": np.concatenate(ids) if ids else [], "value": np.concatenate(values) if values else []})
    validate_submission(sub, test_df)
    return sub


def validate_submission(submission: pd.DataFrame, test_df: pd.DataFrame) -> None:
    """Raise SubmissionError unless every expected id is present once with a finite value."""
    for col in ("id", "value"):
        if col not in submission.columns:
            raise SubmissionError(f"submission has no column {col!r}")
    values = pd.to_numeric(submission["value"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        kind = "NaN" if np.isnan(values[bad][0]) else "infinite"
        raise SubmissionError(f"submission has {int(bad.sum())} NaN/infinite value(s); first ({kind}) at id "
                              f"{submission['id'].iloc[int(np.flatnonzero(bad)[0])]!r}")
    ids = submission["id"].astype(str)
    dup = ids.duplicated()
    if dup.any():
        raise SubmissionError(f"submission has {int(dup.sum())} duplicated id(s), first {ids[dup].iloc[0]!r}")
    expected = expected_submission_ids(test_df)
    present = expected.isin(ids)
    if not present.all():
        raise SubmissionError(f"submission is missing {int((~present).sum())} of {len(expected)} expected rows, "
                              f"first {expected[~present].iloc[0]!r}")
    extra = ~ids.isin(expected)
    if extra.any():
        raise SubmissionError(f"submission has {int(extra.sum())} row(s) test.csv does not ask for, "
                              f"first {ids[extra].iloc[0]!r}")


def write_submission(submission: pd.DataFrame, path: PathLike, test_df: Optional[pd.DataFrame] = None) -> Path:
    """Validate (when test_df is given) and write `submission` as .parquet or .csv."""
    path = Path(path)
    if test_df is not None:
        validate_submission(submission, test_df)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise InputError(f"{path}: submission must end in .parquet or .csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    out = submission[["id", "value"]]
    if suffix == ".parquet":
        out.to_parquet(path, index=False)
    else:
        out.to_csv(path, index=False)
    return path


def read_submission(path: PathLike) -> pd.DataFrame:
    return _read_table(path, "submission", ("id", "value"), dtype={"id": str})


def solution_rows(record: Record, image_id: str, fs: float) -> pd.DataFrame:
    """Solution rows (id, fs, value) for one image from its per-lead ground-truth segments."""
    ids = [make_ids(image_id, lead, len(record[lead])) for lead in LEADS]
    values = [np.asarray(record[lead], dtype=np.float64) for lead in LEADS]
    n = sum(len(v) for v in values)
    return pd.DataFrame({"id": np.concatenate(ids), "fs": np.full(n, fs), "value": np.concatenate(values)})


def solution_from_record_csv(path: PathLike, image_id: str, fs: float) -> pd.DataFrame:
    return solution_rows(record_segments(read_record_csv(path)), image_id, fs)


def solution_from_train_folder(root: PathLike, image_ids: Optional[Iterable[str]] = None,
                               types: Optional[Iterable[str]] = None) -> pd.DataFrame:
    """Solution rows for the images of a train folder, so that any train folder can be scored.

    Image ids are "{record}-{type}" (see `list_train_images`); `image_ids` restricts them.
    """
    root = Path(root)
    train = read_train_csv(root / "train.csv")
    train = train.set_index(train["id"].astype(str))
    entries = list_train_images(root, types)
    if image_ids is not None:
        wanted = set(map(str, image_ids))
        entries = [e for e in entries if e.image_id in wanted]
    parts, cache = [], {}
    for e in entries:
        if e.record_id not in cache:
            cache[e.record_id] = record_segments(read_record_csv(root / "train" / e.record_id / f"{e.record_id}.csv"))
        parts.append(solution_rows(cache[e.record_id], e.image_id, float(train.loc[e.record_id, "fs"])))
    if not parts:
        raise InputError(f"{root}: no images found to build a solution from")
    return pd.concat(parts, ignore_index=True)


def read_solution(path: PathLike, image_ids: Optional[Iterable[str]] = None) -> pd.DataFrame:
    """A solution table (.csv/.parquet with id, fs, value) or a competition train folder."""
    path = Path(path)
    if path.is_dir():
        return solution_from_train_folder(path, image_ids=image_ids)
    return _read_table(path, "solution", ("id", "fs", "value"), dtype={"id": str})
