"""Placement on made-up machines: which queued job starts now, on which GPUs, and why the others wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tuneforge.services.placement import RESERVE_AFTER, Inventory, Limits, Want, never_fits, place

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EIGHT = Inventory(devices=tuple(range(8)))


def queued(job_id: str, gpus: int = 1, ids: tuple[int, ...] | None = None, priority: int = 0,
           minutes_ago: float = 1) -> Want:
    return Want(job_id, gpus, ids, priority, NOW - timedelta(minutes=minutes_ago))


def test_jobs_fit_on_free_gpus_in_order_within_the_job_limit():
    queue = [queued("a", 2, minutes_ago=3), queued("b", 4, minutes_ago=2), queued("c", 1, minutes_ago=1)]
    plan = place(queue, EIGHT, Limits(jobs=2), NOW)
    assert plan.starts == {"a": (0, 1), "b": (2, 3, 4, 5)}
    assert "job slots" in plan.waiting["c"]


def test_named_gpus_wait_for_exactly_those_and_any_gpu_takes_what_is_free():
    busy = Inventory(devices=tuple(range(4)), leased=frozenset({0, 1}), running_jobs=1)
    plan = place([queued("named", 2, (1, 2), minutes_ago=2), queued("any", 2)], busy, Limits(jobs=4), NOW)
    assert plan.starts == {"any": (2, 3)}
    assert plan.waiting["named"] == "GPU(s) 1 are in use"


def test_priority_goes_before_arrival():
    plan = place([queued("early", 8, minutes_ago=10), queued("urgent", 8, priority=5)], EIGHT, Limits(jobs=2), NOW)
    assert list(plan.starts) == ["urgent"] and "needs 8 GPU(s); 0 free" in plan.waiting["early"]


def test_the_gpu_limit_caps_all_jobs_together():
    held = Inventory(devices=tuple(range(8)), leased=frozenset({0, 1, 2, 3}), running_jobs=1)
    plan = place([queued("three", 3), queued("two", 2)], held, Limits(jobs=5, gpus=6), NOW)
    assert plan.starts == {"two": (4, 5)}
    assert "local_gpu_max_concurrent" in plan.waiting["three"]
    assert place([queued("three", 3)], held, Limits(jobs=5, gpus=None), NOW).starts == {"three": (4, 5, 6)}


def test_smaller_jobs_backfill_until_the_big_one_has_waited_long_enough():
    mixed = Inventory(devices=(0, 1, 2, 3), leased=frozenset({0, 1}), running_jobs=1)
    young_big = [queued("big", 4, minutes_ago=5), queued("small", 1, minutes_ago=1)]
    assert place(young_big, mixed, Limits(jobs=4), NOW).starts == {"small": (2,)}, "backfills past a big job"
    old_big = [queued("big", 4, minutes_ago=RESERVE_AFTER.total_seconds() / 60 + 1), queued("small", 1)]
    plan = place(old_big, mixed, Limits(jobs=4), NOW)
    assert plan.starts == {}, "once it has waited long, GPUs drain for it"
    assert "behind job big" in plan.waiting["small"]


def test_a_machine_without_gpus_runs_cpu_jobs_up_to_the_job_limit():
    none = Inventory(running_jobs=1)
    plan = place([queued("x", 0), queued("y", 0), queued("z", 0)], none, Limits(jobs=3), NOW)
    assert plan.starts == {"x": (), "y": ()} and "job slots" in plan.waiting["z"]
    assert place([queued("x", 0)], none, Limits(jobs=0), NOW).starts == {}, "a limit of 0 pauses the queue"


def test_what_could_never_run_is_named():
    assert never_fits(queued("x", 2, (0, 9)), range(8), Limits()) == ("GPU(s) 9 do not exist on this machine "
                                                                     "(GPUs: 0, 1, 2, 3, 4, 5, 6, 7)")
    assert never_fits(queued("x", 9), range(8), Limits()) == "needs 9 GPU(s); this machine has 8"
    assert never_fits(queued("x", 1, (0,)), [], Limits()) == "GPU(s) 0 do not exist on this machine (GPUs: none)"
    assert "allows 2" in never_fits(queued("x", 4), range(8), Limits(gpus=2))
    assert never_fits(queued("x", 0), [], Limits()) is None


def test_a_job_that_cannot_fit_here_any_more_holds_up_no_one():
    lowered = Limits(jobs=4, gpus=2)  # it asked for 4 before the limit came down
    old = [queued("big", 4, minutes_ago=RESERVE_AFTER.total_seconds() / 60 + 1), queued("small", 1)]
    plan = place(old, EIGHT, lowered, NOW)
    assert plan.starts == {"small": (0,)}
    assert plan.waiting["big"] == "needs 4 GPU(s); local_gpu_max_concurrent allows 2"
