"""The parity check between native and ONNX probabilities: pass quietly, or fail naming row and gap."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.common.onnx_parity import ParityError, check_parity


@pytest.fixture
def native() -> np.ndarray:
    """Five rows of binary-class probabilities, each row summing to one (exact in binary, so they print)."""
    p = np.array([0.125, 0.25, 0.5, 0.75, 0.875])
    return np.column_stack([1 - p, p])


def test_identical_outputs_pass_with_zero_gap(native):
    report = check_parity(native, native.copy(), atol=1e-6)
    assert (report.rows, report.max_abs_diff, report.mean_abs_diff) == (5, 0.0, 0.0)


def test_float32_rounding_is_within_a_float32_tolerance():
    native = np.array([[0.9, 0.1], [0.3, 0.7]])  # not exact in float32: ONNX graphs compute in float32
    report = check_parity(native, native.astype(np.float32), atol=1e-6)
    assert 0.0 < report.max_abs_diff < 1e-7


def test_gap_within_tolerance_passes_and_is_reported(native):
    exported = native.copy()
    exported[2] += [-5e-5, 5e-5]
    report = check_parity(native, exported, atol=1e-4)
    assert report.worst_row == 2
    assert report.max_abs_diff == pytest.approx(5e-5)
    assert report.mean_abs_diff == pytest.approx(1e-5)  # one row of five
    assert report.as_metrics("test_onnx") == {
        "test_onnx_max_abs_diff": report.max_abs_diff, "test_onnx_mean_abs_diff": report.mean_abs_diff,
    }


def test_perturbed_row_fails_naming_the_row_and_the_gap(native):
    exported = native.copy()
    exported[3] += [-0.125, 0.125]
    exported[1] += [-0.001, 0.001]  # also off, but not the worst
    with pytest.raises(ParityError) as caught:
        check_parity(native, exported, atol=1e-4)
    message = str(caught.value)
    assert "on 2 of 5 rows" in message
    assert "worst row 3 differs by 0.125 > 0.0001" in message
    assert "(native [0.25, 0.75], ONNX [0.125, 0.875])" in message


def test_parity_error_is_an_assertion_error_so_pytest_shows_it_as_a_failure():
    assert issubclass(ParityError, AssertionError)


def test_shape_mismatch_fails(native):
    with pytest.raises(ParityError, match=r"shape mismatch: native \(5, 2\) vs ONNX \(4, 2\)"):
        check_parity(native, native[:4], atol=1.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_onnx_output_fails_naming_the_row(native, bad):
    exported = native.copy()
    exported[4, 1] = bad
    with pytest.raises(ParityError, match="ONNX output is not finite at row 4"):
        check_parity(native, exported, atol=1.0)  # even a huge tolerance does not excuse NaN
