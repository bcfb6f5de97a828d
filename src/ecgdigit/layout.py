"""Paper geometry, lead layout and the canonical rectified frame: the one source of truth.

Every other module takes its constants from here. Coordinates follow image conventions:
x grows to the right (time), y grows downwards (so higher voltage means smaller y).

Paper coordinates are millimetres from the top-left large-grid line (vertical line i = 0,
horizontal line j = 0). The canonical frame (SPEC §3) is an axis-aligned scaling of paper
millimetres: 4400 x 1700 px, time 0..10 s at x = 236..4160 (vertical grid lines 3..53),
79 px per mV, row baselines at y = 703.5, 987.5, 1271.5, 1531.5.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

# ---------------------------------------------------------------------------------------------
# Paper standard
# ---------------------------------------------------------------------------------------------
PAPER_SPEED_MM_PER_S = 25.0
GAIN_MM_PER_MV = 10.0
SMALL_GRID_MM = 1.0
LARGE_GRID_MM = 5.0
RECORD_SECONDS = 10.0  # every competition record lasts 10 s
SEGMENT_SECONDS = 2.5  # one column of the 3 x 4 block

MM_PER_INCH = 25.4


@dataclass(frozen=True)
class PaperSize:
    name: str
    width_mm: float  # landscape
    height_mm: float
    grid_vertical_lines: int  # lines i = 0 .. n-1, left to right
    grid_horizontal_lines: int  # lines j = 0 .. n-1, top down

    def pixels(self, dpi: float) -> Tuple[int, int]:
        """(width, height) in pixels at `dpi`, as the competition renders them (2200 x 1700 at 200)."""
        return (int(round(self.width_mm / MM_PER_INCH * dpi)), int(round(self.height_mm / MM_PER_INCH * dpi)))


LETTER = PaperSize("letter", 279.4, 215.9, grid_vertical_lines=57, grid_horizontal_lines=44)
A4 = PaperSize("a4", 297.0, 210.0, grid_vertical_lines=60, grid_horizontal_lines=43)
PAPER_SIZES: Dict[str, PaperSize] = {p.name: p for p in (LETTER, A4)}
DEFAULT_DPI = 200

# ---------------------------------------------------------------------------------------------
# Leads
# ---------------------------------------------------------------------------------------------
LEADS: Tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
LEAD_INDEX: Dict[str, int] = {name: k for k, name in enumerate(LEADS)}
RHYTHM_LEAD = "II"
# Keypoint classes of stage 0: 12 lead labels then the rhythm-strip label.
KEYPOINT_NAMES: Tuple[str, ...] = LEADS + ("II-rhythm",)


@dataclass(frozen=True)
class LeadPlacement:
    """Where one printed trace segment sits: its row band and its time window on the page."""

    lead: str
    row: int  # 0-based printed row (band) index
    column: int  # 0-based column within its row
    t_start: float  # seconds, page time of the first sample
    t_end: float  # seconds, exclusive

    @property
    def duration(self) -> float:
        return self.t_end - self.t_start


@dataclass(frozen=True)
class PaperLayout:
    """A printed arrangement of leads.

    `rows[r]` lists the placements printed in row band r, left to right. `baselines_y_mm` gives the
    0 mV line of each row in paper millimetres. `label_nodes[k]` is the large-grid node (j, i) that
    carries the label of placement k (in the order of `placements`).
    """

    name: str
    rows: Tuple[Tuple[LeadPlacement, ...], ...]
    baselines_y_mm: Tuple[float, ...]
    label_nodes: Tuple[Tuple[int, int], ...]
    time0_line: int = 3  # vertical grid line where t = 0 is drawn

    @property
    def placements(self) -> Tuple[LeadPlacement, ...]:
        return tuple(p for row in self.rows for p in row)

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    def placements_of(self, lead: str) -> Tuple[LeadPlacement, ...]:
        return tuple(p for p in self.placements if p.lead == lead)

    @property
    def time0_mm(self) -> float:
        return self.time0_line * LARGE_GRID_MM


def _grid_layout(name: str, columns: Tuple[Tuple[str, ...], ...], rhythm: Tuple[str, ...],
                 baselines_y_mm: Tuple[float, ...], label_rows_j: Tuple[int, ...],
                 label_cols_i: Tuple[int, ...]) -> PaperLayout:
    """Build a layout from a lead table: `columns[c][r]` is the lead of row r, column c."""
    n_cols = len(columns)
    n_block_rows = len(columns[0])
    seg = RECORD_SECONDS / n_cols
    rows = []
    labels = []
    for r in range(n_block_rows):
        rows.append(tuple(LeadPlacement(columns[c][r], r, c, c * seg, (c + 1) * seg) for c in range(n_cols)))
        labels.extend((label_rows_j[r], label_cols_i[c]) for c in range(n_cols))
    for k, lead in enumerate(rhythm):
        r = n_block_rows + k
        rows.append((LeadPlacement(lead, r, 0, 0.0, RECORD_SECONDS),))
        labels.append((label_rows_j[r], label_cols_i[0]))
    return PaperLayout(name, tuple(rows), baselines_y_mm, tuple(labels))


# ---------------------------------------------------------------------------------------------
# Canonical rectified frame (SPEC §3)
# ---------------------------------------------------------------------------------------------
CANONICAL_WIDTH = 4400
CANONICAL_HEIGHT = 1700
CANONICAL_X_T0 = 236.0  # x of t = 0 s (vertical grid line 3)
CANONICAL_X_T10 = 4160.0  # x of t = 10 s (vertical grid line 53)
CANONICAL_PX_PER_MV = 79.0
CANONICAL_BASELINES_Y: Tuple[float, ...] = (703.5, 987.5, 1271.5, 1531.5)
NETWORK_CROP_WIDTH = 4352  # top-left crop fed to networks, divisible by 32
NETWORK_CROP_HEIGHT = 1696

CANONICAL_PX_PER_S = (CANONICAL_X_T10 - CANONICAL_X_T0) / RECORD_SECONDS  # 392.4
CANONICAL_PX_PER_MM_X = CANONICAL_PX_PER_S / PAPER_SPEED_MM_PER_S  # 15.696
CANONICAL_PX_PER_MM_Y = CANONICAL_PX_PER_MV / GAIN_MM_PER_MV  # 7.9
N_BANDS = len(CANONICAL_BASELINES_Y)  # rows 1-3 + rhythm strip: the four stage-2 channels

# The competition layout: 3 rows x 4 columns of 2.5 s and a 10 s lead-II rhythm strip.
STANDARD_3X4 = _grid_layout(
    "3x4+II",
    columns=(("I", "II", "III"), ("aVR", "aVL", "aVF"), ("V1", "V2", "V3"), ("V4", "V5", "V6")),
    rhythm=("II",),
    baselines_y_mm=tuple(y / CANONICAL_PX_PER_MM_Y for y in CANONICAL_BASELINES_Y),
    label_rows_j=(19, 26, 33, 40),
    label_cols_i=(3, 16, 28, 41),
)
# Further printed arrangements (synthetic data variety). Label nodes sit 6 mm below each
# baseline, as in the competition layout (baseline 89.05 mm, label row j = 19 at 95 mm).
SIX_BY_TWO = _grid_layout(
    "6x2",
    columns=(("I", "II", "III", "aVR", "aVL", "aVF"), ("V1", "V2", "V3", "V4", "V5", "V6")),
    rhythm=(),
    baselines_y_mm=(64.0, 89.0, 114.0, 139.0, 164.0, 189.0),
    label_rows_j=(14, 19, 24, 29, 34, 39),
    label_cols_i=(3, 28),
)
TWELVE_BY_ONE = _grid_layout(
    "12x1",
    columns=(LEADS,),
    rhythm=(),
    baselines_y_mm=tuple(5.0 * (8 + 3 * k) - 6.0 for k in range(12)),
    label_rows_j=tuple(8 + 3 * k for k in range(12)),
    label_cols_i=(3,),
)
STANDARD_3X4_3R = _grid_layout(
    "3x4+II,V1,V5",
    columns=(("I", "II", "III"), ("aVR", "aVL", "aVF"), ("V1", "V2", "V3"), ("V4", "V5", "V6")),
    rhythm=("II", "V1", "V5"),
    baselines_y_mm=tuple(5.0 * j - 6.0 for j in (12, 18, 24, 30, 36, 42)),
    label_rows_j=(12, 18, 24, 30, 36, 42),
    label_cols_i=(3, 16, 28, 41),
)
LAYOUTS: Dict[str, PaperLayout] = {lay.name: lay for lay in (STANDARD_3X4, SIX_BY_TWO, TWELVE_BY_ONE, STANDARD_3X4_3R)}


# ---------------------------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------------------------
def seconds_to_mm(t):
    """Page time (s) -> paper x in mm from grid line 0."""
    return STANDARD_3X4.time0_mm + np.asarray(t, dtype=np.float64) * PAPER_SPEED_MM_PER_S


def mm_to_seconds(x_mm):
    return (np.asarray(x_mm, dtype=np.float64) - STANDARD_3X4.time0_mm) / PAPER_SPEED_MM_PER_S


def mv_to_mm(mv):
    """Voltage -> vertical extent in mm (positive up on paper)."""
    return np.asarray(mv, dtype=np.float64) * GAIN_MM_PER_MV


def mm_to_canonical(x_mm, y_mm):
    """Paper millimetres -> canonical pixel coordinates (x, y)."""
    x = CANONICAL_X_T0 + (np.asarray(x_mm, dtype=np.float64) - STANDARD_3X4.time0_mm) * CANONICAL_PX_PER_MM_X
    y = np.asarray(y_mm, dtype=np.float64) * CANONICAL_PX_PER_MM_Y
    return x, y


def canonical_to_mm(x, y):
    """Canonical pixel coordinates -> paper millimetres (x_mm, y_mm)."""
    x_mm = (np.asarray(x, dtype=np.float64) - CANONICAL_X_T0) / CANONICAL_PX_PER_MM_X + STANDARD_3X4.time0_mm
    y_mm = np.asarray(y, dtype=np.float64) / CANONICAL_PX_PER_MM_Y
    return x_mm, y_mm


def seconds_to_canonical_x(t):
    return CANONICAL_X_T0 + np.asarray(t, dtype=np.float64) * CANONICAL_PX_PER_S


def canonical_x_to_seconds(x):
    return (np.asarray(x, dtype=np.float64) - CANONICAL_X_T0) / CANONICAL_PX_PER_S


def mv_to_canonical_y(mv, band: int):
    """Voltage in band `band` (0..3) -> canonical y."""
    return CANONICAL_BASELINES_Y[band] - np.asarray(mv, dtype=np.float64) * CANONICAL_PX_PER_MV


def canonical_y_to_mv(y, band: int):
    return (CANONICAL_BASELINES_Y[band] - np.asarray(y, dtype=np.float64)) / CANONICAL_PX_PER_MV


def grid_node_mm(j, i):
    """Large-grid node (row j, column i) -> paper millimetres (x_mm, y_mm)."""
    return np.asarray(i, dtype=np.float64) * LARGE_GRID_MM, np.asarray(j, dtype=np.float64) * LARGE_GRID_MM


def grid_node_canonical(j, i):
    """Large-grid node (row j, column i) -> canonical pixels (x, y)."""
    return mm_to_canonical(*grid_node_mm(j, i))


def canonical_grid_nodes(paper: PaperSize = LETTER) -> np.ndarray:
    """All large-grid nodes in canonical pixels, shape (n_horizontal, n_vertical, 2) as (x, y)."""
    jj, ii = np.meshgrid(np.arange(paper.grid_horizontal_lines), np.arange(paper.grid_vertical_lines), indexing="ij")
    x, y = grid_node_canonical(jj, ii)
    return np.stack([x, y], axis=-1)


def mm_to_pixels(mm, dpi: float):
    """Millimetres on paper -> pixels of a page rendered at `dpi`."""
    return np.asarray(mm, dtype=np.float64) * dpi / MM_PER_INCH


# ---------------------------------------------------------------------------------------------
# Sample counts
# ---------------------------------------------------------------------------------------------
def record_length(fs: float) -> int:
    """Samples of a full 10 s record (lead II's length in a submission)."""
    return int(round(RECORD_SECONDS * fs))


def segment_length(fs: float) -> int:
    """Default samples of a 2.5 s segment; test.csv's number_of_rows wins where it is given."""
    return int(RECORD_SECONDS * fs) // len(STANDARD_3X4.rows[0])


def default_lead_lengths(fs: float) -> Dict[str, int]:
    """Rows per lead as test.csv gives them for a record at fs: lead II 10 s, the others 2.5 s."""
    return {lead: record_length(fs) if lead == RHYTHM_LEAD else segment_length(fs) for lead in LEADS}


def segment_start(placement: LeadPlacement, fs: float) -> int:
    """Index of the first sample of `placement` within the 10 s record."""
    return int(round(placement.t_start * fs))


# ---------------------------------------------------------------------------------------------
# Orientation: 8 codes, rotation by 90 degrees * (code % 4) counter-clockwise after an optional
# left-right mirror (code >= 4). Code 0 is an upright page.
# ---------------------------------------------------------------------------------------------
N_ORIENTATIONS = 8


def apply_orientation(image: np.ndarray, code: int) -> np.ndarray:
    """Turn an upright page into orientation `code`."""
    if not 0 <= code < N_ORIENTATIONS:
        raise ValueError(f"orientation code must be in 0..7, got {code}")
    out = image[:, ::-1] if code >= 4 else image
    return np.ascontiguousarray(np.rot90(out, code % 4))


def undo_orientation(image: np.ndarray, code: int) -> np.ndarray:
    """Inverse of `apply_orientation`: bring an image in orientation `code` upright."""
    if not 0 <= code < N_ORIENTATIONS:
        raise ValueError(f"orientation code must be in 0..7, got {code}")
    out = np.rot90(image, -(code % 4))
    return np.ascontiguousarray(out[:, ::-1] if code >= 4 else out)
