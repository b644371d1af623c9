"""Fuzz the config loader: random YAML-like data and mutations of a valid config either parse
into a StudyConfig or raise UserError, never another exception type."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xaicompare.config import StudyConfig
from xaicompare.errors import UserError
from xaicompare.study_config import load_config, parse_config

VALID = {
    "name": "fuzz", "output": "runs/{name}", "seed": 0, "target": "predicted",
    "dataset": {"name": "shapes", "options": {"split": "test", "n": 8, "size": 32},
                "n_images": 4, "seed": 0},
    "models": [{"source": "test_resnet", "pretrained": False, "num_classes": 10,
                "class_indices": None, "kwargs": {}},
               {"source": "zoo:all"}],
    "methods": {"gradcam": {}, "integrated_gradients": {"n_steps": 4},
                "kernelshap": {"n_samples": 16, "n_segments": 6}},
    "compare": {"metrics": ["cosine"]}, "cluster": {"k": 2},
    "diversity": {"corruptions": ["gaussian_noise"], "severities": [1]},
    "report": {"formats": ["png"]}, "executor": {"batch_size": 4},
}
COUNT = {"cases": 0, "parsed": 0}

scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**6)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(["gradcam", "test_resnet", "zoo:all", "shapes", "auto", "{name}",
                              "{0}", "{name!r}", "{}", "", "png", "cosine", "label"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8) | st.sampled_from(list(VALID)),
                                        inner, max_size=4), max_leaves=12)


def check(data) -> None:
    COUNT["cases"] += 1
    try:
        config = parse_config(data)
    except UserError:
        return
    assert isinstance(config, StudyConfig)
    COUNT["parsed"] += 1


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(values)
def test_random_data_is_a_config_or_a_user_error(data):
    check(data)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _paths(value, (*prefix, i))


PATHS = [p for p in _paths(VALID) if p]


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(["set", "delete", "wrap"]),
                          values), min_size=1, max_size=3))
def test_mutated_valid_config_is_a_config_or_a_user_error(mutations):
    data = copy.deepcopy(VALID)
    for path, action, value in mutations:
        parent = data
        for key in path[:-1]:
            try:
                parent = parent[key]
            except (KeyError, IndexError, TypeError):
                break
        else:
            key = path[-1]
            try:
                if action == "delete":
                    del parent[key]
                elif action == "wrap":
                    parent[key] = [parent[key]]
                else:
                    parent[key] = value
            except (KeyError, IndexError, TypeError):
                pass
    check(data)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=80) | st.binary(max_size=80).map(lambda b: b.decode("latin-1")))
def test_random_yaml_text_is_a_config_or_a_user_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("yaml") / "study.yaml"
    path.write_text(text)
    COUNT["cases"] += 1
    try:
        load_config(path)
    except UserError:
        pass


@pytest.mark.parametrize("output", ["{0}", "{}", "{nme}", "{name"])
def test_output_template_with_unknown_placeholder_is_a_user_error(output):
    with pytest.raises(UserError, match="output"):
        parse_config({**VALID, "output": output}).output_dir  # noqa: B018


def test_valid_config_parses_and_fuzz_count():
    assert isinstance(parse_config(copy.deepcopy(VALID)), StudyConfig)
    print(f"\nconfig fuzz cases so far: {COUNT['cases']} ({COUNT['parsed']} parsed)")
