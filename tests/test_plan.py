"""The planner, without Docker or a cloud: every action and its reason."""
from __future__ import annotations

import pytest


@pytest.fixture
def plan(coursekit):
    from coursekit.fleet import plan

    return plan


def _obs(plan, seat, image="img-1", settings="s1", state="running", name=None, detail=""):
    return plan.Observed(seat, name or f"c-{seat}", image, settings, state, detail)


def _kinds(actions):
    return [(a.seat, a.kind.value, a.reason) for a in actions]


def test_empty_fleet_creates_every_seat(plan):
    desired = [plan.Desired(s, "img-1", "s1") for s in ("alice", "bob")]
    assert _kinds(plan.plan(desired, [])) == [("alice", "create", "new seat"), ("bob", "create", "new seat")]


def test_healthy_up_to_date_seats_are_kept(plan):
    desired = [plan.Desired("alice", "img-1", "s1")]
    assert _kinds(plan.plan(desired, [_obs(plan, "alice")])) == [("alice", "keep", "up to date")]


def test_starting_seats_are_kept(plan):
    desired = [plan.Desired("alice", "img-1", "s1")]
    assert _kinds(plan.plan(desired, [_obs(plan, "alice", state="starting")])) == [("alice", "keep", "starting")]


def test_outdated_image_is_updated_in_place(plan):
    desired = [plan.Desired("alice", "img-2", "s1")]
    assert _kinds(plan.plan(desired, [_obs(plan, "alice")])) == [("alice", "update", "runs an outdated image")]
    assert _kinds(plan.plan(desired, [_obs(plan, "alice", state="starting")])) == [("alice", "update", "runs an outdated image")]


def test_changed_settings_win_over_a_new_image(plan):
    desired = [plan.Desired("alice", "img-2", "s2")]
    assert _kinds(plan.plan(desired, [_obs(plan, "alice")])) == [("alice", "replace", "settings changed")]


def test_changed_settings_are_replaced(plan):
    desired = [plan.Desired("alice", "img-1", "s2")]
    assert _kinds(plan.plan(desired, [_obs(plan, "alice")])) == [("alice", "replace", "settings changed")]


@pytest.mark.parametrize("state,detail,reason", [
    ("stopped", "container exited, exit code 1", "unhealthy: container exited, exit code 1"),
    ("failed", "Jupyter does not answer (HTTP 502)", "unhealthy: Jupyter does not answer (HTTP 502)"),
    ("failed", "", "unhealthy: failed"),
])
def test_unhealthy_seats_are_replaced(plan, state, detail, reason):
    desired = [plan.Desired("alice", "img-1", "s1")]
    assert _kinds(plan.plan(desired, [_obs(plan, "alice", state=state, detail=detail)])) == [("alice", "replace", reason)]


def test_seats_that_left_the_roster_are_removed_last(plan):
    desired = [plan.Desired("alice", "img-1", "s1")]
    observed = [_obs(plan, "zoe"), _obs(plan, "alice")]
    assert _kinds(plan.plan(desired, observed)) == [("alice", "keep", "up to date"), ("zoe", "remove", "no longer in the roster")]


def test_duplicates_keep_the_running_one(plan):
    desired = [plan.Desired("alice", "img-1", "s1")]
    observed = [_obs(plan, "alice", state="stopped", name="a-old"), _obs(plan, "alice", name="a-new")]
    actions = plan.plan(desired, observed)
    assert _kinds(actions) == [("alice", "keep", "up to date"), ("alice", "remove", "duplicate instance")]
    assert actions[0].observed.instance_id == "a-new" and actions[1].observed.instance_id == "a-old"


def test_mixed_plan_in_roster_order(plan):
    desired = [plan.Desired(s, "img-2", "s1") for s in ("a", "b", "c", "d")]
    observed = [_obs(plan, "b", image="img-2"), _obs(plan, "c"), _obs(plan, "d", image="img-2", state="stopped"), _obs(plan, "e")]
    assert [(a.seat, a.kind.value) for a in plan.plan(desired, observed)] == [
        ("a", "create"), ("b", "keep"), ("c", "update"), ("d", "replace"), ("e", "remove")
    ]


def test_plan_is_pure(plan):
    desired = [plan.Desired("a", "img-1", "s1")]
    observed = [_obs(plan, "a")]
    assert plan.plan(desired, observed) == plan.plan(desired, observed)
    assert desired == [plan.Desired("a", "img-1", "s1")] and observed == [_obs(plan, "a")]


def test_a_seat_behind_a_gateway_keeps_the_image_s_own_notebook_args(coursekit):
    from coursekit.fleet.docker.doors import notebook_args

    assert notebook_args({}, "/ann/") == "--ServerApp.base_url=/ann/"
    assert notebook_args({"NOTEBOOK_ARGS": " --LabApp.collaborative=True "}, "/ann/") == \
        "--LabApp.collaborative=True --ServerApp.base_url=/ann/"
