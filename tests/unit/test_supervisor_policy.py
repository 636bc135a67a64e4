"""`chamados up`'s restart policy, on a fake clock: delays grow 2, 4, 8, 16, 30 s (the cap),
come back to the first after a healthy run, and each child keeps its own schedule; the
watch loop's one pass (`tend`) never waits for a child's delay."""
from chamados import supervisor
from chamados.supervisor import (HEALTHY_UPTIME_SECONDS, RESTART_DELAYS_SECONDS, RestartPolicy,
                                 tend)


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def crash_quickly(policy: RestartPolicy, clock: FakeClock) -> float:
    """Start the child, let it die one second later, wait out its delay; the delay used."""
    policy.started(clock.now)
    delay = policy.exited(clock.advance(1))
    assert not policy.due(clock.now)
    clock.advance(delay)
    assert policy.due(clock.now)
    return delay


def test_the_delays_are_the_ones_documented():
    assert RESTART_DELAYS_SECONDS == (2, 4, 8, 16, 30)
    assert HEALTHY_UPTIME_SECONDS == 60


def test_delays_grow_then_stay_at_the_cap():
    clock, policy = FakeClock(), RestartPolicy()
    assert [crash_quickly(policy, clock) for _ in range(8)] == [2, 4, 8, 16, 30, 30, 30, 30]


def test_a_child_is_due_exactly_when_its_delay_has_passed():
    clock, policy = FakeClock(), RestartPolicy()
    policy.started(clock.now)
    assert not policy.waiting
    assert policy.exited(clock.advance(5)) == 2
    assert policy.waiting
    assert not policy.due(clock.advance(1.9))
    assert policy.due(clock.advance(0.1))
    policy.started(clock.now)
    assert not policy.waiting and not policy.due(clock.advance(100))


def test_the_delay_resets_after_a_healthy_run():
    clock, policy = FakeClock(), RestartPolicy()
    for _ in range(5):
        crash_quickly(policy, clock)  # now at the cap
    policy.started(clock.now)
    assert policy.exited(clock.advance(HEALTHY_UPTIME_SECONDS)) == 2
    clock.advance(2)
    assert crash_quickly(policy, clock) == 4  # growing again from the start


def test_a_run_just_short_of_healthy_does_not_reset():
    clock, policy = FakeClock(), RestartPolicy()
    for _ in range(3):
        crash_quickly(policy, clock)  # 2, 4, 8
    policy.started(clock.now)
    assert policy.exited(clock.advance(HEALTHY_UPTIME_SECONDS - 0.5)) == 16


def test_two_children_keep_their_own_schedules():
    clock = FakeClock()
    flapping, steady = RestartPolicy(), RestartPolicy()
    steady.started(clock.now)
    for _ in range(4):
        crash_quickly(flapping, clock)  # 2, 4, 8, 16: flapping is at 30 next
    flapping.started(clock.now)
    assert flapping.exited(clock.advance(1)) == 30
    assert steady.exited(clock.now) == 2  # steady's first exit: the first delay
    clock.advance(2)
    assert steady.due(clock.now) and not flapping.due(clock.now)
    steady.started(clock.now)
    assert not flapping.due(clock.advance(27.9))
    assert flapping.due(clock.advance(0.1))


class FakeProcess:
    def __init__(self):
        self.returncode = None


class FakeChild:
    """What `tend` uses of a Child: name, running, process, start(), restarts, policy."""

    def __init__(self, name: str):
        self.name = name
        self.policy = RestartPolicy()
        self.restarts = 0
        self.starts = 0
        self.process = None

    def start(self):
        self.starts += 1
        self.process = FakeProcess()

    def die(self, returncode: int = 1):
        self.process.returncode = returncode

    @property
    def running(self):
        return self.process is not None and self.process.returncode is None


def test_tend_restarts_each_child_on_its_own_schedule_without_sleeping(monkeypatch):
    def no_sleeping(seconds):
        raise AssertionError(f"tend slept {seconds}s")

    monkeypatch.setattr(supervisor.time, "sleep", no_sleeping)
    clock, lines = FakeClock(), []
    a, b = FakeChild("accounts"), FakeChild("tickets")
    for child in (a, b):
        child.start()
        child.policy.started(clock.now)

    # accounts flaps twice (2 s, 4 s): its next delay is 8 s
    for _ in range(2):
        a.die()
        tend([a, b], clock.advance(1), lines.append)
        clock.advance(a.policy.next_start_at - clock.now)
        tend([a, b], clock.now, lines.append)
        assert a.running
    assert a.restarts == 2
    a.die()
    tend([a, b], clock.advance(1), lines.append)
    assert a.policy.next_start_at - clock.now == 8

    # tickets exits while accounts waits its 8 s: tickets is back 2 s later, accounts still waits
    b.die(returncode=-9)
    tend([a, b], clock.advance(0.5), lines.append)
    tend([a, b], clock.advance(2), lines.append)
    assert b.running and b.restarts == 1
    assert not a.running and a.policy.waiting
    tend([a, b], clock.advance(5.5), lines.append)
    assert a.running and a.restarts == 3
    assert "tickets exited (-9); restarting in 2s" in lines
    assert "accounts exited (1); restarting in 8s" in lines
    assert "restarting tickets (restart 1)" in lines


def test_tend_leaves_running_children_alone():
    clock, lines = FakeClock(), []
    child = FakeChild("gateway")
    child.start()
    child.policy.started(clock.now)
    for _ in range(10):
        tend([child], clock.advance(30), lines.append)
    assert child.starts == 1 and child.restarts == 0 and lines == []
