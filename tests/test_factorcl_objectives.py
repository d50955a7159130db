import pytest

from factorcl.objectives import METHODS, SIGNS, TERMS, UPPER_BOUND_TERMS, get_objective


def test_table_rows_match_the_paper():
    full = set(TERMS)
    expected = {
        "factorcl-ssl": (full, True, False),
        "factorcl-sup": (full, True, True),
        "ourcl-ssl": (full, False, False),
        "ourcl-sup": (full, False, True),
        "simclr": ({"shared_keep"}, False, False),
        "cross+self": ({"shared_keep", "unique_keep"}, False, False),
        "cross+self+fact": ({"shared_keep", "unique_keep"}, True, False),
    }
    for name, (terms, factorized, supervised) in expected.items():
        obj = METHODS[name]
        assert set(obj.terms) == terms, name
        assert obj.factorized is factorized and obj.supervised is supervised, name
    assert METHODS["supcon"].supcon and METHODS["supcon"].supervised


def test_signs_lower_bounds_maximised_upper_bounds_minimised():
    assert SIGNS == {
        "shared_keep": -1,
        "shared_remove": 1,
        "unique_keep": -1,
        "unique_remove": 1,
        "unique_cond_keep": -1,
    }
    assert all(SIGNS[t] == 1 for t in UPPER_BOUND_TERMS)


def test_representation_keys_and_views():
    assert METHODS["factorcl-ssl"].representation_keys == ("s1", "s2", "u1", "u2")
    assert METHODS["simclr"].representation_keys == ("z1", "z2")
    assert METHODS["factorcl-ssl"].needs_views and METHODS["cross+self"].needs_views
    assert not METHODS["simclr"].needs_views and not METHODS["factorcl-sup"].needs_views


def test_names_are_forgiving_and_unknown_names_list_the_valid_ones():
    assert get_objective("FactorCL_SSL").name == "factorcl-ssl"
    with pytest.raises(ValueError, match=r"method must be one of \['factorcl-ssl'.*Did you mean 'factorcl-ssl'"):
        get_objective("factorcl-sll")
    with pytest.raises(ValueError, match="method must be one of"):
        get_objective("byol")
