"""kcnn.cli.argtypes: the argparse converters every kcnn command line uses."""
import argparse

import pytest

from kcnn.cli import argtypes


@pytest.mark.parametrize("convert,text,value", [
    (argtypes.positive_int, "3", 3),
    (argtypes.non_negative_int, "0", 0),
    (argtypes.positive_float, "0.5", 0.5),
    (argtypes.non_negative_float, "0", 0.0),
    (argtypes.port, "65535", 65535),
    (argtypes.port, "0", 0),
    (argtypes.open_fraction, "0.2", 0.2),
])
def test_accepts_values_within_bounds(convert, text, value):
    assert convert(text) == value


@pytest.mark.parametrize("convert,text,accepted", [
    (argtypes.positive_int, "0", "a positive integer"),
    (argtypes.positive_int, "1.5", "a positive integer"),
    (argtypes.positive_int, "x", "a positive integer"),
    (argtypes.non_negative_int, "-1", "a non-negative integer"),
    (argtypes.positive_float, "0", "a positive finite number"),
    (argtypes.positive_float, "inf", "a positive finite number"),
    (argtypes.positive_float, "nan", "a positive finite number"),
    (argtypes.non_negative_float, "-0.1", "a finite number >= 0"),
    (argtypes.port, "65536", "a port from 0 to 65535"),
    (argtypes.open_fraction, "0", "a number between 0 and 1, both excluded"),
    (argtypes.open_fraction, "1.0", "a number between 0 and 1, both excluded"),
])
def test_rejects_with_the_accepted_values_named(convert, text, accepted):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        convert(text)
    assert str(info.value) == f"expected {accepted}, received {text!r}"


def test_parser_reports_one_line(capsys):
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--epochs", type=argtypes.positive_int)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--epochs", "0"])
    assert info.value.code == 2
    assert "argument --epochs: expected a positive integer, received '0'" in capsys.readouterr().err
