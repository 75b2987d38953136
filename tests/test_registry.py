import pytest

import algorithms
from algorithms.base import Learner


def test_builtin_names_listed():
    assert set(["pretrain", "maml", "fomaml", "reptile"]) <= set(algorithms.names())


def test_wildcards():
    assert algorithms.names("*maml") == ["maml", "fomaml"]
    assert algorithms.names("rep*") == ["reptile"]
    assert algorithms.names("nothing*") == []


def test_unknown_name_suggests_close_match():
    with pytest.raises(algorithms.UnknownNameError) as err:
        algorithms.get("mamll")
    assert "did you mean 'maml'" in str(err.value)


def test_duplicate_name_raises():
    class Other(Learner):
        pass

    with pytest.raises(ValueError, match="already registered"):
        algorithms.register("maml")(Other)
    assert algorithms.get("maml").__name__ == "MAML"


def test_register_requires_learner():
    with pytest.raises(TypeError):
        algorithms.register("not-a-learner")(object)
