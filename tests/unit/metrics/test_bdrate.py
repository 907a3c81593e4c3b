import numpy as np
import pytest

from squeeze3d.metrics.bdrate import bd_rate


def test_half_the_bytes_everywhere_is_minus_50_percent():
    q = [20.0, 25.0, 30.0, 35.0]
    r = np.array([100.0, 200.0, 400.0, 800.0])
    assert bd_rate(r, q, r / 2, q) == pytest.approx(-0.5, abs=1e-9)
    assert bd_rate(r, q, r, q) == pytest.approx(0.0, abs=1e-12)


def test_overlap_only_and_disjoint_curves():
    assert bd_rate([100, 200], [20, 25], [50, 60], [40, 45]) is None
    # the test curve covers only 26..28 dB: only that range is compared
    v = bd_rate([100, 200, 400], [20, 25, 30], [150, 160], [26, 28])
    assert -1.0 < v < 0.0
