"""The release chart PNG: valid, 900x500, deterministic, robust to gaps and odd texts."""

from __future__ import annotations

import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.ops.release_chart import render_release_chart

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]

# In production these come from the locale catalogue; here they are only test fixtures.
LABELS = {
    "error_rate": "Error rate",
    "p95": "P95 latency (ms)",
    "traffic": "green traffic",
    "rollback": "rollback",
    "time": "time (UTC)",
    "no_data": "no data",
}
THRESHOLDS = {
    "error_rate_rollback": 0.05,
    "error_rate_observe": 0.01,
    "p95_rollback_ms": 2000,
    "p95_proceed_ms": 800,
}
START = datetime(2025, 3, 5, 14, 0, tzinfo=UTC)


def release(n: int = 40, *, gaps: bool = False) -> tuple[list[dict], list[dict]]:
    points = []
    for i in range(n):
        bad = i >= n - 5
        points.append(
            {
                "at": START + timedelta(seconds=15 * i),
                "error_rate": 0.08 if bad else 0.002 + 0.001 * (i % 3),
                "p95_ms": 2400.0 if bad else 350.0 + 5 * i,
                "requests": 120,
                "verdict": "rollback" if bad else "proceed",
            }
        )
    if gaps:
        for i in range(5, 9):
            points[i]["error_rate"] = None
        for i in range(12, 15):
            points[i]["p95_ms"] = None
        points[20]["requests"] = None
        points[21]["error_rate"] = float("nan")
    end = points[-1]["at"] if points else START
    steps = [
        {"at": START, "percent": 0},
        {"at": START + timedelta(seconds=30), "percent": 10},
        {"at": START + timedelta(seconds=120), "percent": 50},
        {"at": START + timedelta(seconds=240), "percent": 100},
        {"at": end, "event": "rollback"},
    ]
    return points, steps


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which must come first and carry a valid CRC."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR"
    assert length == 13
    body = data[16 : 16 + length]
    (crc,) = struct.unpack(">I", data[16 + length : 20 + length])
    assert crc == zlib.crc32(kind + body)
    width, height = struct.unpack(">II", body[:8])
    return width, height


def chunk_types(data: bytes) -> list[bytes]:
    kinds, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        kinds.append(kind)
        offset += 12 + length
    return kinds


def test_png_signature_and_dimensions() -> None:
    points, steps = release()
    data = render_release_chart(points, steps, THRESHOLDS, "checkout: blue/green", LABELS)
    assert png_size(data) == (900, 500)
    kinds = chunk_types(data)
    assert kinds[0] == b"IHDR"
    assert kinds[-1] == b"IEND"


def test_no_software_or_time_metadata() -> None:
    points, steps = release()
    data = render_release_chart(points, steps, THRESHOLDS, "t", LABELS)
    assert b"matplotlib" not in data.lower()
    assert b"tIME" not in chunk_types(data)


def test_empty_points_still_a_png() -> None:
    data = render_release_chart([], [], THRESHOLDS, "checkout", LABELS)
    assert png_size(data) == (900, 500)
    # Steps without any sample, and no labels at all, are fine too.
    _, steps = release()
    assert png_size(render_release_chart([], steps, {}, "", {})) == (900, 500)


def test_none_values_are_gaps() -> None:
    points, steps = release(gaps=True)
    data = render_release_chart(points, steps, THRESHOLDS, "gaps", LABELS)
    assert png_size(data) == (900, 500)
    assert data != render_release_chart(*release(), THRESHOLDS, "gaps", LABELS)


def test_all_values_none_and_single_point() -> None:
    blank = [
        {"at": START, "error_rate": None, "p95_ms": None, "requests": None, "verdict": "observe"}
    ]
    assert png_size(render_release_chart(blank, [], THRESHOLDS, "x", LABELS)) == (900, 500)
    one = [{"at": START, "error_rate": 0.2, "p95_ms": 3000.0, "requests": 1, "verdict": "rollback"}]
    assert png_size(render_release_chart(one, [], {}, "x", LABELS)) == (900, 500)


def test_same_input_same_bytes() -> None:
    points, steps = release(gaps=True)
    first = render_release_chart(points, steps, THRESHOLDS, "determinism", LABELS)
    second = render_release_chart(points, steps, THRESHOLDS, "determinism", LABELS)
    assert first == second
    assert first != render_release_chart(points, steps, THRESHOLDS, "determinism!", LABELS)


def test_same_instant_in_another_zone_same_bytes() -> None:
    points, steps = release()
    plus2 = timezone(timedelta(hours=2))
    shifted = [dict(p, at=p["at"].astimezone(plus2)) for p in points]
    assert render_release_chart(points, steps, THRESHOLDS, "tz", LABELS) == render_release_chart(
        shifted, steps, THRESHOLDS, "tz", LABELS
    )


def test_concurrent_renders_agree() -> None:
    points, steps = release()
    expected = render_release_chart(points, steps, THRESHOLDS, "threads", LABELS)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(
                lambda _: render_release_chart(points, steps, THRESHOLDS, "threads", LABELS),
                range(4),
            )
        )
    assert all(result == expected for result in results)


@pytest.mark.parametrize(
    "title",
    [
        "deploy $\\frac{ oops$ 50% <b>&amp; {braces} _under^score \\ back",  # broken mathtext
        "café — déploiement « vert » ñ ü ß",
        "tabs\tnew\nlines and a NUL\x00 and \x1b escape",
        "a-very-long-service-name-" * 20,
        "",
    ],
)
def test_user_text_with_odd_characters(title: str) -> None:
    points, steps = release()
    labels = dict(LABELS, rollback="$\\frac{ $", no_data="50% $")
    data = render_release_chart(points, steps, THRESHOLDS, title, labels)
    assert png_size(data) == (900, 500)


def test_matplotlib_imported_lazily_and_without_pyplot() -> None:
    code = (
        "import sys\n"
        "import bot.ops.release_chart as m\n"
        "assert 'matplotlib' not in sys.modules\n"
        "from datetime import UTC, datetime\n"
        "p = [{'at': datetime(2025, 1, 1, tzinfo=UTC), 'error_rate': 0.1,"
        " 'p95_ms': 1.0, 'requests': 1, 'verdict': 'proceed'}]\n"
        "m.render_release_chart(p, [], {}, 't', {})\n"
        "assert 'matplotlib' in sys.modules\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_render_time_200_points_is_printed() -> None:
    points, steps = release(200, gaps=True)
    render_release_chart(points, steps, THRESHOLDS, "warm-up", LABELS)
    began = time.perf_counter()
    data = render_release_chart(points, steps, THRESHOLDS, "200 points", LABELS)
    elapsed = time.perf_counter() - began
    print(f"render_release_chart: 200 points in {elapsed * 1000:.0f} ms, {len(data)} bytes")
    assert png_size(data) == (900, 500)
