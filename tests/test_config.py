"""Study config: good configs round-trip; each kind of bad config gets its own message."""

from pathlib import Path

import pytest
import yaml

from xaicompare.errors import UserError
from xaicompare.study_config import load_config, parse_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def minimal(**overrides) -> dict:
    data = {"name": "t", "models": [{"source": "resnet18", "pretrained": False}],
            "methods": {"gradcam": {}}}
    data.update(overrides)
    return data


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate_and_round_trip(path):
    config = load_config(path)
    again = parse_config(yaml.safe_load(config.to_yaml()))
    assert again == config


def test_defaults_fill_in():
    config = parse_config(minimal())
    assert config.compare.metrics == ["cosine", "rbf", "kappa", "spearman"]
    assert config.executor.batch_size == "auto"
    assert str(config.output_dir) == "runs/t"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (minimal(modelz=[]), "modelz: unknown key (did you mean 'models'?); accepted: name"),
        (minimal(models=[{"source": "resnet18", "pretraind": False}]),
         "models[0].pretraind: unknown key (did you mean 'pretrained'?)"),
        (minimal(dataset={"name": "shapes", "n_images": "many"}), "dataset.n_images:"),
        (minimal(dataset={"name": "shapes", "n_images": 0}), "dataset.n_images:"),
        (minimal(dataset={"name": "cifar"}), "dataset.name: got 'cifar'; input should be"),
        (minimal(models=[]), "models: List should have at least 1 item"),
        (minimal(methods={"gradcamm": {}}), "methods.gradcamm: unknown method (did you mean "
                                            "'gradcam'?); accepted:"),
        (minimal(methods={"integrated_gradients": {"nsteps": 8}}),
         "methods.integrated_gradients.nsteps: unknown parameter (did you mean 'n_steps'?)"),
        (minimal(compare={"metrics": ["cosin"]}),
         "compare.metrics[0]: unknown metric 'cosin' (did you mean 'cosine'?)"),
        (minimal(models=[{"source": "resnet181"}]),
         "models[0].source: unknown timm model 'resnet181' (did you mean"),
        (minimal(models=[{"source": "zoo:nope"}]), "models[0].source: unknown zoo model 'nope'"),
        (minimal(executor={"kind": "slurm"}), "executor.kind: got 'slurm'"),
        (minimal(diversity={"corruptions": ["gaussian_nois"]}),
         "diversity.corruptions[0]: unknown corruption 'gaussian_nois' (did you mean"),
        (minimal(diversity={"severities": [6]}), "diversity.severities[0]: got 6; accepted: 1 to 5"),
        ({"models": [{"source": "resnet18"}]}, "name: Field required"),
        (["not", "a", "mapping"], "must be a mapping"),
    ],
)
def test_bad_configs_get_specific_messages(data, expected):
    with pytest.raises(UserError) as info:
        parse_config(data)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_load_config_names_the_file(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("name: x\nmodels: [{source: resnet18}]\nbogus: 1\n")
    with pytest.raises(UserError, match=r"study.yaml: bogus: unknown key"):
        load_config(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
