from dataclasses import dataclass

import numpy as np
import pytest

from models import REGISTRY, Ranker, create_ranker, get_ranker, register


class _Constant(Ranker):
    @dataclass(frozen=True)
    class Settings:
        value: float = 1.0

    def fit(self, datamodule):
        pass

    def predict(self, datamodule, split):
        return np.full(datamodule.arrays(split).n_rows, self.settings.value)


def test_register_and_create():
    register("test_constant")(_Constant)
    try:
        ranker = create_ranker("test_constant", {"value": 2.0}, seed=3)
        assert isinstance(ranker, _Constant) and ranker.config == {"value": 2.0}
        assert ranker.settings == _Constant.Settings(value=2.0)
        assert ranker.seed == 3 and get_ranker("test_constant") is _Constant
    finally:
        REGISTRY.pop("test_constant")


def test_settings_default_and_as_plain_data():
    assert _Constant().settings == _Constant.Settings() and _Constant().config == {"value": 1.0}
    assert _Constant(_Constant.Settings(value=3.0)).config == {"value": 3.0}
    # Lists stay lists in the plain data (records, W&B), tuples in the settings.
    defaults = get_ranker("dcn_v2").default_settings()
    assert defaults["deep_layers"] == [256, 128]
    assert create_ranker("dcn_v2").settings.deep_layers == (256, 128)
    assert create_ranker("dcn_v2", {"deep_layers": [32]}).settings.deep_layers == (32,)


def test_unknown_setting_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown setting.*depth.*known: value"):
        _Constant({"depth": 3})


def test_unknown_setting_names_the_known_ones():
    with pytest.raises(ValueError) as error:
        create_ranker("xgboost", {"max_dept": 4})
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("model_config.xgboost: unknown setting(s) max_dept; known: ")
    assert "max_depth" in message and "n_estimators" in message


def test_unknown_model_lists_the_registered_ones():
    with pytest.raises(ValueError, match="unknown model 'xgbost'; registered: .*xgboost"):
        get_ranker("xgbost")


def test_register_rejects_name_clashes_and_non_rankers():
    with pytest.raises(ValueError, match="already registered"):
        register("xgboost")(_Constant)
    with pytest.raises(TypeError):
        register("not_a_ranker")(dict)


def test_settings_are_checked_against_their_types():
    ranker = create_ranker("dcn_v2", {"lr": "1e-4", "max_epochs": 2.0, "low_rank": 16})
    assert ranker.config["lr"] == 1e-4 and isinstance(ranker.config["lr"], float)
    assert ranker.config["max_epochs"] == 2 and isinstance(ranker.config["max_epochs"], int)
    assert ranker.settings.lr == 1e-4 and ranker.settings.low_rank == 16
    for bad, message in [
        ({"lr": "fast"}, "model_config.dcn_v2.lr must be a number, not 'fast'"),
        ({"max_epochs": 2.5}, "must be a whole number"),
        ({"patience": True}, "must be a whole number"),
        ({"structure": 3}, "must be one of stacked, parallel"),
        ({"deep_layers": 64}, "must be a list"),
    ]:
        with pytest.raises(ValueError, match=message):
            create_ranker("dcn_v2", bad)


@pytest.mark.parametrize(
    "model, bad, where",
    [
        ("xgboost", {"max_depth": "deep"}, "model_config.xgboost.max_depth"),
        ("xgboost", {"target": 3}, "model_config.xgboost.target"),
        ("tabnet", {"gamma": [1.3]}, "model_config.tabnet.gamma"),
        ("mmoe", {"expert_layers": [64, "wide"]}, "model_config.mmoe.expert_layers[1]"),
        ("mmoe", {"task_weights": {"click": "half"}}, "model_config.mmoe.task_weights.click"),
        ("mtl_tinybert", {"text": "no"}, "model_config.mtl_tinybert.text"),
    ],
)
def test_a_setting_of_the_wrong_type_is_one_line_naming_it(model, bad, where):
    with pytest.raises(ValueError) as error:
        create_ranker(model, bad)
    message = str(error.value)
    assert "\n" not in message and message.startswith(where + " must be ")


def test_numbers_written_as_text_become_numbers():
    ranker = create_ranker("tabnet", {"learning_rate": "1e-4", "max_epochs": "3"})
    assert ranker.settings.learning_rate == 0.0001 and type(ranker.settings.learning_rate) is float
    assert ranker.config["max_epochs"] == 3 and type(ranker.config["max_epochs"]) is int
    # An int where a float is declared is a float.
    assert type(create_ranker("xgboost", {"subsample": 1}).settings.subsample) is float


def test_a_choice_outside_its_set_is_refused_naming_the_choices():
    for model, bad, message in [
        ("ft_transformer", {"profile": "gpu"}, "ft_transformer.profile must be one of cpu, paper"),
        ("mtl_tinybert", {"profile": "laptop"}, "mtl_tinybert.profile must be one of cpu, gpu"),
        ("mmoe", {"loss": "pairwise"}, "mmoe.loss must be one of listwise, pointwise"),
        ("dcn_v2", {"low_rank_activation": "gelu"}, "must be one of relu, tanh, not 'gelu'"),
        ("mtl_tinybert", {"text_precision": 32}, "text_precision must be one of 32, bf16"),
    ]:
        with pytest.raises(ValueError, match=message):
            create_ranker(model, bad)
    assert create_ranker("dcn_v2", {"structure": "parallel"}).settings.structure == "parallel"
    assert (
        create_ranker("mtl_tinybert", {"fine_tune_layers": "all"}).config["fine_tune_layers"]
        == "all"
    )


def test_none_is_accepted_only_where_a_setting_is_optional():
    # Annotated `X | None`: None means "off" or "from the profile".
    for model, key in [
        ("xgboost", "n_jobs"),
        ("dcn_v2", "low_rank"),
        ("dcn_v2", "low_rank_activation"),
        ("mmoe", "score_mix"),
        ("ft_transformer", "d_block"),
        ("mtl_tinybert", "fine_tune_layers"),
    ]:
        assert create_ranker(model, {key: None}).config[key] is None
    for model, key in [
        ("xgboost", "learning_rate"),
        ("dcn_v2", "structure"),
        ("mmoe", "task_weights"),
        ("tabnet", "target"),
        ("mtl_tinybert", "text"),
    ]:
        with pytest.raises(ValueError, match=f"model_config.{model}.{key} must be .*not None"):
            create_ranker(model, {key: None})
