"""Tests for the backtest runner: CSV in, scored CSV out, and clear errors on bad input."""

from __future__ import annotations

import io

import pytest

from services.scoring.backtest import format_number, method_params, read_series, run_backtest


def backtest(text: str, method: str, **options: float) -> str:
    out = io.StringIO()
    run_backtest(method, io.StringIO(text), out, **options)
    return out.getvalue()


def test_known_answer_row() -> None:
    text = "period,count\n" + "".join(
        f"2024-W{week:02d},{count}\n" for week, count in enumerate([1, 1, 1, 3, 3, 1, 2, 4], 1)
    )
    lines = backtest(text, "ears-c1", baseline=7, alpha=0.05).splitlines()
    assert lines[0] == "period,count,expected,upper,alarm"
    assert lines[1] == "2024-W01,1,,,false"
    assert lines[7] == "2024-W07,2,,,false"
    # mean 12/7 = 1.714286, upper 3.278854 (surveillance's own test); 4 > upper.
    assert lines[8] == "2024-W08,4,1.714286,3.278854,true"
    assert len(lines) == 9


def test_c2_output_exactly() -> None:
    text = "period,count\nd1,2\nd2,4\nd3,6\nd4,100\nd5,100\nd6,9\nd7,5\n"
    # d6: ref 2,4,6 -> mean 4, U = 4 + 1.644854*2 = 7.289707.
    # d7: ref 4,6,100 -> mean 110/3 = 36.666667, squared deviations
    #     (98^2 + 92^2 + 190^2)/9 = 54168/9, sd = sqrt(54168/18) = 54.857391,
    #     U = 36.666667 + 1.644854*54.857391 = 126.899045.
    assert backtest(text, "ears-c2", baseline=3, alpha=0.05) == (
        "period,count,expected,upper,alarm\n"
        "d1,2,,,false\nd2,4,,,false\nd3,6,,,false\nd4,100,,,false\nd5,100,,,false\n"
        "d6,9,4,7.289707,true\n"
        "d7,5,36.666667,126.899045,false\n"
    )


def test_cusum_baseline_is_the_training_length() -> None:
    text = "period,count\n" + "".join(f"p{i},{c}\n" for i, c in enumerate([3, 5, 4, 4, 6, 10]))
    lines = backtest(text, "cusum", baseline=4).splitlines()
    # m = 4: U = ceil(2*3.3 + 4) = 11 for both; S = 0, then 0 + 3 - 1.04 = 1.96 < 2.26.
    assert lines[4:] == ["p3,4,,,false", "p4,6,4,11,false", "p5,10,4,11,false"]


def test_ewma_defaults_and_short_baseline() -> None:
    text = "period,count\n" + "".join(f"d{i},2\n" for i in range(13)) + "d13,4\n"
    assert backtest(text, "ewma").splitlines()[-1] == "d13,4,2,3.799349,true"
    # --baseline 7 lowers the minimum baseline with it: first bound at index 7 + 2.
    short = backtest(text, "ewma", baseline=7).splitlines()
    assert short[9].endswith(",,,false") and short[10].startswith("d9,2,2,")


def test_too_short_series_has_empty_bounds_and_header_only_input() -> None:
    assert backtest("period,count\na,1\nb,2\n", "ears-c3") == (
        "period,count,expected,upper,alarm\na,1,,,false\nb,2,,,false\n"
    )
    assert backtest("period,count\n", "ears-c1") == "period,count,expected,upper,alarm\n"


def test_tolerates_bom_spaces_crlf_and_blank_lines() -> None:
    periods, counts = read_series(io.StringIO("\ufeffPeriod , Count\r\n a , 3 \r\n\r\nb,2.5\n\n"))
    assert periods == ["a", "b"]
    assert counts == [3.0, 2.5]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: missing header 'period,count'"),
        ("date,count\n2024-01-01,3\n", "line 1: expected header 'period,count'"),
        ("2024-01-01,3\n", "line 1: expected header"),
        ("period,count\na,1\nb,many\n", "line 3: count 'many' is not a number"),
        ("period,count\na,1\nb,\n", "line 3: count '' is not a number"),
        ("period,count\na,-2\n", "line 2: count '-2' is negative"),
        ("period,count\na,-0.5\n", "line 2: count '-0.5' is negative"),
        ("period,count\na,nan\n", "line 2: count 'nan' is not a finite number"),
        ("period,count\na,1,2\n", "line 2: expected 2 fields (period,count), got 3"),
        ("period,count\na\n", "line 2: expected 2 fields"),
        ("period,count\n ,1\n", "line 2: period is empty"),
    ],
)
def test_bad_csv_names_line_and_problem(text: str, message: str) -> None:
    out = io.StringIO()
    with pytest.raises(ValueError) as error:
        run_backtest("ears-c1", io.StringIO(text), out)
    assert message in str(error.value)
    assert out.getvalue() == ""


def test_options_that_do_not_apply_are_errors() -> None:
    with pytest.raises(ValueError, match="alpha does not apply to method cusum"):
        method_params("cusum", None, 0.05, None)
    with pytest.raises(ValueError, match="min-sigma does not apply to method ewma"):
        method_params("ewma", None, None, 0.5)
    with pytest.raises(ValueError, match="unknown method 'c1'"):
        method_params("c1", None, None, None)
    assert method_params("ears-c3", 5, None, 0.5) == {"baseline": 5, "min_sigma": 0.5}
    assert method_params("ewma", 28, 0.001, None) == {
        "baseline": 28,
        "min_baseline": 11,
        "red_p": 0.001,
        "yellow_p": 0.05,
    }


def test_bad_method_parameter_fails_before_writing() -> None:
    out = io.StringIO()
    with pytest.raises(ValueError, match="baseline"):
        run_backtest("ears-c1", io.StringIO("period,count\na,1\n"), out, baseline=2)
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3.0, "3"),
        (3.2788535935876855, "3.278854"),
        (0.1 + 0.2, "0.3"),
        (-1e-9, "0"),
        (1.23456789, "1.234568"),
        (2.0000004, "2"),
        (12.5, "12.5"),
        (float("inf"), "inf"),
    ],
)
def test_format_number(value: float, text: str) -> None:
    assert format_number(value) == text
