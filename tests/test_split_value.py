"""Which column a value goes to: the rule every sink shares (the design's value-column decision)."""

from __future__ import annotations

import math

import pytest

from collector.model import split_value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12.5, (12.5, None)),
        (0.0, (0.0, None)),
        (-0.0, (-0.0, None)),
        (1e-130, (1e-130, None)),  # NUMBER's smallest magnitude still fits
        (-1e-130, (-1e-130, None)),
        (9.99e125, (9.99e125, None)),
        (True, (1, None)),
        (False, (0, None)),
        (10**38 - 1, (10**38 - 1, None)),
        ("RUN", (None, "RUN")),
        (None, (None, None)),
    ],
)
def test_values_a_number_column_holds_go_to_it(value: object, expected: tuple[object, object]) -> None:
    assert split_value(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (math.nan, "nan"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        (1e126, "1e+126"),
        (9e-131, "9e-131"),  # below NUMBER's smallest magnitude: the driver refuses it on the client
        (-5e-324, "-5e-324"),
        (10**38, str(10**38)),
    ],
)
def test_numbers_outside_number_range_go_to_text_in_their_exact_spelling(value: object, text: str) -> None:
    number, spelled = split_value(value)  # type: ignore[arg-type]
    assert number is None
    assert spelled == text
    # The spelling reads back as the same number: nothing was rounded on the way to the text column.
    assert spelled is not None
    assert type(value)(spelled) == value or math.isnan(value)  # type: ignore[arg-type]
