"""The host-side checks themselves: every failure is a ValueError naming the argument."""

import jax
import numpy as np
import pytest

from rsd import _validation as v


def test_huge_python_ints_are_numbers_not_type_errors():
    v.check_nonnegative("a", 10**30)
    with pytest.raises(ValueError, match="a must be > 0"):
        v.check_positive("a", -(10**30))


@pytest.mark.parametrize("value", [np.array(["x"]), ["x"], 3, None])
def test_choice_of_a_non_string_names_the_argument(value):
    with pytest.raises(ValueError, match="^kind must be one of"):
        v.check_choice("kind", value, ("x", "y"))


@pytest.mark.parametrize("value", [jax.random.key(0), "abc", object()])
def test_non_numeric_values_name_the_argument(value):
    with pytest.raises(ValueError, match="^rate must be"):
        v.check_positive("rate", value)
