import numpy as np
import pytest

from models import REGISTRY, Ranker, create_ranker, get_ranker, register


class _Constant(Ranker):
    default_config = {"value": 1.0}

    def fit(self, datamodule):
        pass

    def predict(self, datamodule, split):
        return np.full(datamodule.arrays(split).n_rows, self.config["value"])


def test_register_and_create():
    register("test_constant")(_Constant)
    try:
        ranker = create_ranker("test_constant", {"value": 2.0}, seed=3)
        assert isinstance(ranker, _Constant) and ranker.config == {"value": 2.0}
        assert ranker.seed == 3 and get_ranker("test_constant") is _Constant
    finally:
        REGISTRY.pop("test_constant")


def test_unknown_setting_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown setting.*depth.*known: value"):
        _Constant({"depth": 3})


def test_unknown_model_lists_the_registered_ones():
    with pytest.raises(ValueError, match="unknown model 'xgbost'; registered: .*xgboost"):
        get_ranker("xgbost")


def test_register_rejects_name_clashes_and_non_rankers():
    with pytest.raises(ValueError, match="already registered"):
        register("xgboost")(_Constant)
    with pytest.raises(TypeError):
        register("not_a_ranker")(dict)


def test_settings_are_checked_against_their_defaults_types():
    ranker = create_ranker("dcn_v2", {"lr": "1e-4", "max_epochs": 2.0, "low_rank": 16})
    assert ranker.config["lr"] == 1e-4 and isinstance(ranker.config["lr"], float)
    assert ranker.config["max_epochs"] == 2 and isinstance(ranker.config["max_epochs"], int)
    for bad, message in [
        ({"lr": "fast"}, "model_config.dcn_v2.lr must be a number, not 'fast'"),
        ({"max_epochs": 2.5}, "must be a whole number"),
        ({"patience": True}, "must be a whole number"),
        ({"structure": 3}, "must be text"),
        ({"deep_layers": 64}, "must be a list"),
    ]:
        with pytest.raises(ValueError, match=message):
            create_ranker("dcn_v2", bad)
