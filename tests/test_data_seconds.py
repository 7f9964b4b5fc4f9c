"""deploys.support.data.seconds: the waits' timeouts from group data (or --data, which gives
strings), refused in one line before any change when they are not seconds above zero."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pyinfra.api.exceptions import DeployError

from deploys.support import data


def host(**values):
    return SimpleNamespace(name="@local", data=SimpleNamespace(get=values.get))


@pytest.mark.parametrize(("given", "seconds"), [(300, 300.0), ("15", 15.0), (0.5, 0.5)])
def test_a_number_of_seconds_is_taken(given, seconds):
    assert data.seconds(host(pod_restart_timeout=given), "pod_restart_timeout") == seconds


@pytest.mark.parametrize("given", ["soon", 0, -5, True, None, "inf", "nan"])
def test_anything_else_is_one_line(given):
    with pytest.raises(DeployError) as refused:
        data.seconds(host(pod_restart_timeout=given), "pod_restart_timeout")
    assert str(refused.value) == (
        f"[@local] pod_restart_timeout {given!r} is not a number of seconds above zero: set it "
        "to one in the group data or with --data"
    )


def test_a_missing_key_says_where_group_data_lives():
    with pytest.raises(DeployError, match="no data 'pod_restart_timeout'"):
        data.seconds(host(), "pod_restart_timeout")
