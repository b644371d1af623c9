"""Display names from the study config: validated when the config is parsed, then used by
every figure of the report (method defaults from the method registry)."""

import pytest

import xaicompare.attribution  # noqa: F401  (registers the methods' display names)
from xaicompare.errors import UserError
from xaicompare.report import display_names, method_label, model_label
from xaicompare.study import Study
from xaicompare.study_config import parse_config


def config(**overrides) -> dict:
    data = {"name": "t", "models": [{"source": "resnet18", "pretrained": False},
                                    {"source": "resnet10t", "name": "small",
                                     "display_name": "ResNet-10t", "pretrained": False}],
            "methods": {"gradcam": {}, "kernelshap": {}}}
    data.update(overrides)
    return data


def test_config_display_names_reach_the_figures():
    study = Study(parse_config(config(display_names={"models": {"resnet18": "ResNet-18"},
                                                     "methods": {"kernelshap": "SHAP"}})))
    names = study.display_names()
    assert names == {"models": {"resnet18": "ResNet-18", "small": "ResNet-10t"},
                     "methods": {"kernelshap": "SHAP"}}
    with display_names(**names):
        assert model_label("small") == "ResNet-10t" and model_label("other") == "other"
        assert method_label("kernelshap") == "SHAP"
        assert method_label("gradcam") == "Grad-CAM"  # the registry's display name
    assert method_label("kernelshap") == "KernelSHAP" and model_label("small") == "small"


@pytest.mark.parametrize(("names", "expected"), [
    ({"methods": {"ig": "IG"}}, "display_names.methods.ig: not a method of this study"),
    ({"models": {"resnet19": "R"}}, "display_names.models.resnet19: not a model of this "
                                    "study (did you mean 'resnet18'?)"),
    ({"models": {"small": "S"}}, "display_names.models.small: the model has a display_name"),
    ({"models": {"resnet18": "ResNet-10t"}}, "display names must differ"),
    ({"models": {"resnet18": ""}}, "display_names.models.resnet18"),
    ({"colours": {}}, "display_names.colours: unknown key"),
])
def test_bad_display_names_are_refused_when_parsed(names, expected):
    with pytest.raises(UserError) as info:
        parse_config(config(display_names=names))
    assert expected in str(info.value)


def test_api_display_names_refuse_duplicates_and_non_strings():
    with pytest.raises(UserError, match="must differ"):
        with display_names(models={"a": "X", "b": "X"}):
            pass
    with pytest.raises(UserError, match="non-empty string"):
        with display_names(methods={"gradcam": 3}):
            pass
