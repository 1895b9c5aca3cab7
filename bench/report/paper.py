"""The paper's published numbers as data (Purohit, Shah, Rajagopalan, CVPR 2019).

Reports print these beside the measured values and never mix them into measured aggregates. Sources:
Table 1 (single-image deblurring on the GoPro test set, 1280x704), Sec. 3.3 (video extraction: the Eq. 6
error on 250 GoPro test images; sizes and timings of the whole pipeline against Jin et al. 2018, [13]).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table1Row:
    """One column of the paper's Table 1 (there methods are columns, metrics rows)."""

    ref: str  # the paper's citation key, e.g. "[34]"
    name: str  # short name of the method
    method: str | None  # our registry name when the suite re-implements it, else None
    psnr: float  # dB on the GoPro test set
    ssim: float
    time_s: float  # seconds per image, as the authors report (timing protocol not stated)
    size_mb: float | None  # model size in MB; None where the paper prints "-"
    hardware: str  # "CPU" or "GPU"


TABLE1: tuple[Table1Row, ...] = (
    Table1Row("[42]", "Xu et al. 2013", None, 21.0, 0.740, 3800.0, None, "CPU"),
    Table1Row("[39]", "Whyte et al. 2012", None, 24.6, 0.845, 700.0, None, "CPU"),
    Table1Row("[33]", "Sun et al. 2015", None, 24.5, 0.851, 1500.0, 54.1, "CPU"),
    Table1Row("[7]", "Gong et al. 2017", None, 26.4, 0.863, 1200.0, 41.2, "CPU"),
    Table1Row("[23]", "Nah et al. 2017", None, 28.9, 0.911, 6.0, 300.0, "GPU"),
    Table1Row("[18]", "DeblurGAN", None, 27.2, 0.905, 0.8, 45.6, "GPU"),
    Table1Row("[34]", "SRN-DeblurNet", "srn", 30.10, 0.933, 0.4, 27.5, "GPU"),
    Table1Row("Ours", "DM", "ours", 30.58, 0.941, 0.02, 17.9, "GPU"),
)

# Sec. 3.3: Eq. 6 error (lower is better) by (method, N frames); GoPro test, 1280x704.
EQ6: dict[tuple[str, int], float] = {
    ("ours", 7): 44.12,
    ("jin2018", 7): 49.06,
    ("ours", 9): 48.24,
}

# Sec. 3.3 and Table 1: model sizes in MB (the paper does not say 10^6 or 2^20 bytes).
SIZE_MB: dict[str, float] = {
    "dm": 17.9,  # the deblurring module alone (Table 1)
    "ours": 45.0,  # DM + BIE + RVD (Sec. 3.3)
    "jin2018": 70.0,  # Jin et al. 2018, four networks (Sec. 3.3)
    "srn": 27.5,  # SRN-DeblurNet (Table 1)
}

# Seconds per 1280x704 image on a GPU (Table 1, Sec. 3.3); whether CUDA was synchronised is not stated.
TIME_DEBLUR_S: dict[str, float] = {
    "dm": 0.02,
    "srn": 0.4,
    "jin2018": 0.45,  # Sec. 3.3: "0.02s vs 0.45s for deblurring"
}
TIME_VIDEO_S: dict[str, float] = {
    "ours": 0.39,
    "jin2018": 1.10,
}


def table1_row(method: str) -> Table1Row | None:
    """The Table 1 column of a re-implemented method (`srn`, `ours`), or None."""
    for row in TABLE1:
        if row.method == method:
            return row
    return None
