"""Leadership core under random interleavings (hypothesis).

A tiny simulated PostgreSQL (one lease row, one advisory lock, sessions that can be
killed) and two or three contenders sharing one clock. Each request a contender
sends is executed by the database and answered in separate steps, so replies can
be late, sessions can die between them, a paused contender simply gets no steps,
and requests abandoned by a contender that stepped down can still land in the
database later (a statement already on the wire).

Leadership intervals are [StartLeading.at, StepDown.at), or up to the lease's
deadline for a leader still in office: what a shell that obeys ``leading(now)``
acts within.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from cti.leadership import (
    Connect,
    Evict,
    HandoverAsked,
    Lease,
    LeaseConfig,
    LeaseRow,
    ReadLease,
    Release,
    Renew,
    Request,
    StartLeading,
    StepDown,
    TakeOver,
    TryLock,
)

CONFIG = LeaseConfig(ttl=3.0, renew_within=2.0, renew_every=0.5, poll_every=0.5)


@dataclass
class Db:
    row: LeaseRow | None = None
    lock: int | None = None
    alive: set[int] = field(default_factory=set)
    sessions: int = 0
    beats: int = 0
    handover: bool = False      # an operator's cti handover, until the next takeover

    def kill(self, sid: int | None) -> None:
        if sid is not None:
            self.alive.discard(sid)
            if self.lock == sid:
                self.lock = None

    def execute(self, node: "Node", req: Request, sid: int | None) -> tuple:
        if isinstance(req, Connect):
            self.kill(node.sid)
            self.sessions += 1
            node.sid = self.sessions
            self.alive.add(node.sid)
            return ("connected",)
        if sid is None or sid not in self.alive:
            return ("lost",)
        if isinstance(req, TryLock):
            if self.lock in (None, sid):
                self.lock = sid
                return ("lock", True)
            return ("lock", False)
        if isinstance(req, ReadLease):
            return ("read", self.row)
        if isinstance(req, TakeOver):
            if self.row != req.expected:
                return ("refused",)
            self.beats += 1
            self.row = LeaseRow(node.name, max(self.row.epoch if self.row else 0, req.min_epoch) + 1, self.beats)
            self.handover = False
            return ("took", self.row)
        if isinstance(req, Renew):
            if self.row is None or (self.row.holder, self.row.epoch) != (node.name, req.epoch):
                return ("refused",)
            self.beats += 1     # greatest(now(), heartbeat_at + 1 µs): always a new value
            self.row = replace(self.row, heartbeat_at=self.beats)
            return ("renewed", self.beats, self.handover)
        if isinstance(req, Release):
            if self.row is None or (self.row.holder, self.row.epoch) != (node.name, req.epoch):
                return ("released", False)
            self.beats += 1
            self.row = replace(self.row, heartbeat_at=self.beats, released=True)
            return ("released", True)
        if isinstance(req, Evict):
            if self.lock is not None and self.lock != sid:
                self.kill(self.lock)
            return ("evicted",)
        raise AssertionError(req)


@dataclass
class Node:
    name: str
    lease: Lease
    sid: int | None = None
    current: tuple[Request, int | None] | None = None
    result: tuple | None = None
    ghosts: list[tuple[Request, int | None]] = field(default_factory=list)
    terms: list[list] = field(default_factory=list)     # [start, end or None, epoch]
    asked: int = 0                                      # HandoverAsked told


class Sim:
    def __init__(self, n: int) -> None:
        self.now = 0.0
        self.db = Db()
        self.nodes = [Node(f"n{i}", Lease(f"n{i}", CONFIG, 0.0)) for i in range(n)]
        self.kills: list[tuple[Node, float]] = []

    def record(self, node: Node, decisions: list) -> None:
        for d in decisions:
            if isinstance(d, StartLeading):
                assert not node.terms or node.terms[-1][1] is not None
                node.terms.append([d.at, None, d.epoch])
            elif isinstance(d, StepDown):
                assert node.terms and node.terms[-1][1] is None
                node.terms[-1][1] = d.at
            elif isinstance(d, HandoverAsked):
                assert node.terms and node.terms[-1][1] is None and node.terms[-1][2] == d.epoch
                node.asked += 1

    def send(self, node: Node) -> None:
        self.record(node, node.lease.tick(self.now))
        req = node.lease.next_request(self.now)
        if req is None:
            return
        if node.current is not None and node.result is None:
            node.ghosts.append(node.current)   # abandoned, maybe still on the wire
        node.current, node.result = (req, node.sid), None

    def execute(self, node: Node) -> None:
        if node.current is not None and node.result is None:
            node.result = self.db.execute(node, *node.current)

    def deliver(self, node: Node) -> None:
        if node.current is None or node.result is None:
            return
        lease, now, (kind, *args) = node.lease, self.now, node.result
        node.current = node.result = None
        handler = {
            "connected": lambda: lease.on_connected(now),
            "lost": lambda: lease.on_connection_lost(now),
            "lock": lambda: lease.on_lock(now, *args),
            "read": lambda: lease.on_lease_read(now, *args),
            "took": lambda: lease.on_took_over(now, *args),
            "refused": lambda: (lease.on_takeover_refused(now) if isinstance(lease.pending, TakeOver)
                                else lease.on_renew_refused(now)),
            "renewed": lambda: lease.on_renewed(now, *args),
            "evicted": lambda: lease.on_evicted(now),
            "released": lambda: lease.on_released(now, *args),
        }[kind]
        self.record(node, handler())

    def ghost(self, node: Node) -> None:
        if node.ghosts:
            req, sid = node.ghosts.pop(0)
            if not isinstance(req, Connect):
                self.db.execute(node, req, sid)

    def kill(self, node: Node) -> None:
        if node.lease.leading(self.now):
            self.kills.append((node, self.now))
        self.db.kill(node.sid)

    def release(self, node: Node) -> None:
        """The daemon hands over (it has stopped acting): at any moment, asked or not."""
        self.record(node, node.lease.release(self.now))

    def ask(self, node: Node) -> None:
        self.db.handover = True

    def step(self, node: Node) -> None:
        self.send(node)
        self.execute(node)
        self.deliver(node)

    def apply(self, op: str, i: int, dt: float) -> None:
        node = self.nodes[i % len(self.nodes)]
        if op == "wait":
            self.now += dt
        elif op == "tick":
            self.record(node, node.lease.tick(self.now))
        else:
            getattr(self, op)(node)

    def terms(self) -> list[tuple[str, float, float, int]]:
        out = []
        for node in self.nodes:
            for start, end, epoch in node.terms:
                if end is None:
                    end = node.lease.deadline
                out.append((node.name, start, end, epoch))
        return sorted(out, key=lambda t: t[1])


OPS = st.tuples(
    st.sampled_from(["wait", "wait", "step", "step", "step", "send", "execute", "deliver",
                     "tick", "ghost", "kill", "release", "ask"]),
    st.integers(0, 2),
    st.floats(0.0, 1.5),
)


def run(n: int, ops: list) -> Sim:
    sim = Sim(n)
    for op in ops:
        sim.apply(*op)
    return sim


def check_safety(sim: Sim) -> None:
    terms = sim.terms()
    for a, b in zip(terms, terms[1:]):
        # sorted by start: each term ends before the next one starts, whoever holds them
        assert a[2] <= b[1], f"overlapping leaders: {a} and {b}"
        assert a[3] < b[3], f"epoch did not rise: {a} then {b}"
    for node, lost_at in sim.kills:
        term = next(t for t in node.terms if t[0] <= lost_at and (t[1] is None or t[1] >= lost_at))
        end = term[1] if term[1] is not None else node.lease.deadline
        assert end <= lost_at + CONFIG.renew_within, f"{node.name} led until {end}, lost at {lost_at}"


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=300))
def test_two_contenders_never_lead_at_once_and_epochs_rise(ops: list) -> None:
    check_safety(run(2, ops))


@settings(max_examples=150, deadline=None)
@given(st.lists(OPS, max_size=300))
def test_three_contenders_never_lead_at_once_and_epochs_rise(ops: list) -> None:
    check_safety(run(3, ops))


@settings(max_examples=150, deadline=None)
@given(st.lists(OPS, min_size=50, max_size=300), st.integers(0, 1))
def test_a_fair_run_after_chaos_ends_with_one_leader(ops: list, survivor: int) -> None:
    """Liveness: whatever happened, once one contender runs alone and on time, it
    leads within a few ttls and stays leader."""
    sim = run(2, ops)
    node = sim.nodes[survivor]
    sim.kill(sim.nodes[1 - survivor])
    for _ in range(400):
        sim.now += 0.1
        sim.step(node)
        sim.ghost(node)
    assert node.lease.leading(sim.now)
    check_safety(sim)


def test_the_simulation_reaches_takeovers() -> None:
    """The op mix is not so random that leaders never change (the properties would be vacuous)."""
    sim = Sim(2)
    a, b = sim.nodes
    for _ in range(50):
        sim.now += 0.1
        sim.step(a)
        sim.step(b)
    first = sim.terms()
    assert len(first) == 1
    leader = a if first[0][0] == "n0" else b
    other = b if leader is a else a
    sim.kill(leader)
    for _ in range(60):
        sim.now += 0.1
        sim.step(other)
    assert other.lease.leading(sim.now) and other.lease.epoch == first[0][3] + 1
    check_safety(sim)


def test_a_handover_moves_leadership_well_within_a_ttl_and_the_old_leader_stays_out() -> None:
    sim = Sim(2)
    a, b = sim.nodes
    for _ in range(50):
        sim.now += 0.1
        sim.step(a)
        sim.step(b)
    (first,) = sim.terms()
    leader, other = (a, b) if first[0] == "n0" else (b, a)
    sim.ask(leader)
    while not leader.asked:
        sim.now += 0.1
        sim.step(leader)
    assert leader.asked == 1 and leader.lease.leading(sim.now)
    released_at = sim.now
    sim.release(leader)
    assert not leader.lease.leading(sim.now) and leader.lease.releasing
    while not other.lease.leading(sim.now):
        sim.now += 0.05
        sim.step(leader)
        sim.step(other)
        assert sim.now - released_at < 30
    # No ttl to wait: one poll for the lock (the old session closes after its release), then the takeover.
    assert sim.now - released_at < CONFIG.ttl / 2
    assert other.lease.epoch == first[3] + 1 and sim.db.row is not None and not sim.db.row.released
    assert not sim.db.handover          # the takeover ends the request
    for _ in range(40):                 # the old leader stays a follower
        sim.now += 0.1
        sim.step(leader)
        sim.step(other)
    assert other.lease.leading(sim.now) and not leader.lease.leading(sim.now) and len(sim.terms()) == 2
    check_safety(sim)


def test_a_release_that_lands_after_a_takeover_changes_nothing() -> None:
    """A release is ``WHERE holder and epoch are ours``: late (the leader was deposed
    meanwhile) it leaves the new leader's row alone."""
    db = Db(row=LeaseRow("n1", 8, 40))
    node = Node("n0", Lease("n0", CONFIG, 0.0), sid=1)
    db.alive.add(1)
    assert db.execute(node, Release(7), 1) == ("released", False)
    assert db.row == LeaseRow("n1", 8, 40)
