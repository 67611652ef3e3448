"""What reruns (affalign.config.params): a JsonParams is recorded by Snakemake's params
trigger exactly as the dict it holds and reaches the job as JSON; an Unrecorded value is
invisible to the trigger. Checked against the trigger's own serialiser."""

from __future__ import annotations

import json
import shlex

from snakemake.persistence import UNREPRESENTABLE, PersistenceBase

from affalign.config import JsonParams, Unrecorded, consumer_operations, json_params, unrecorded


def recorded(value):
    """What Snakemake's params trigger records for a params value (9.27: repr of builtins)."""
    return PersistenceBase._serialize_param_builtin(None, value)


def test_json_params_are_recorded_as_their_dict_and_formatted_as_sorted_json():
    params = {"seed": 1, "model_source": "m", "chat_template_kwargs": {"b": 1, "a": [2]}}
    wrapped = json_params(lambda wildcards: params)(None)
    assert isinstance(wrapped, JsonParams)
    assert recorded(wrapped) == recorded(params) == repr(params)
    assert f"{wrapped}" == json.dumps(params, sort_keys=True)
    assert json.loads(format(wrapped)) == params


def test_unrecorded_values_are_invisible_to_the_params_trigger_and_format_as_their_text():
    value = unrecorded(lambda wildcards: "/opt/runtime/bin/python")(None)
    assert isinstance(value, Unrecorded)
    assert recorded(value) is UNREPRESENTABLE
    assert f"{value}" == "/opt/runtime/bin/python"
    assert repr(value) == "Unrecorded('/opt/runtime/bin/python')"


def test_consumer_operations_carry_the_limits_and_an_endpoint_but_are_never_recorded():
    config = {"generation": {"max_in_flight": 16, "server_start_timeout_s": 900, "request_timeout_s": 600}}
    served = consumer_operations(config, {"path": "m"})
    assert recorded(served) is UNREPRESENTABLE
    assert f"{served}" == "--max-in-flight 16 --server-start-timeout 900 --request-timeout 600"
    assert f"{consumer_operations(config)}" == f"{served}"
    endpoint = {"base_url": "http://h/v1", "model": "x y", "max_concurrency": 4}
    flags = shlex.split(f"{consumer_operations(config, {'endpoint': endpoint})}")
    assert flags[-2:] == ["--endpoint", json.dumps(endpoint, sort_keys=True)]
