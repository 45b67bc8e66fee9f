"""The class floor: a conservative gate that lets a class leave its fixed pipeline only while
what leaving has earned keeps the class's quality at the pipeline's, less a tolerance.

Per task class the graph keeps two mergeable streams of judged quality: trajectories that ran
the fixed pipeline (every cell on its default variant, none skipped) and trajectories that
left it somewhere. Before each trajectory of a class the gate asks, after the conservative
bandits of Wu, Shariff, Lattimore and Szepesvari (2016), whether the class's cumulative
quality, counting the deviating trajectories at their lower confidence bound and the next
one at the pipeline's mean, stays at least ``(n + 1) * (m0 - tolerance)`` for the ``n``
trajectories so far and the next; ``m0`` is the pipeline's mean quality on the class. When
it does not, the class runs its pipeline, which earns the gate back ``tolerance`` a
trajectory. A class whose pipeline has not run yet runs it first.

The gate bounds a class's cumulative loss, not the rate of one bad action: a rare class may
spend its budget on an action that is fatal to it and harmless to the classes it shares
nodes with. So the floor also keeps, per set of deviating actions taken together (a
*path*: skips, and variants other than their cell's default), the judged quality of the
class's trajectories that took it, and vetoes an action for the class once the upper
confidence bound of the mean of its trajectories falls below the pipeline's mean less the
tolerance: the action-level test of the same conservative rule, an elimination step as in
successive elimination (Even-Dar, Mannor and Mansour 2006). The bound is that of the
difference of two means, so a pipeline mean of one run counts its own error; one or two
trajectories say little about their noise, so a variance is never below the pooled
variance of every class's pipeline runs. An action found below only on trajectories that
also took another vetoed one is *confounded*: vetoed, and tried again alone once the class
has earned, without its learning budget, the shortfall it showed. An action a class vetoes
on evidence of its own is not offered to a class that has not tried it: a fatal action is
fatal to whoever takes it first, and a rare class takes it long after the frequent ones;
nor is an action that two classes or more veto confounded (each saw it only beside others,
but it is what their harmful trajectories share). Everything is read from the paths, so
two floors merged are one floor fed both.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from schemas.records import TrajectoryState
from services.policy.cells import CellPool
from services.policy.stats import RunningStat

#: Classes' worth of confounded vetoes of one action that make it a warning (one is not:
#: a class's first trajectory skipping four cells at once would warn off its harmless ones).
CORROBORATING_CLASSES = 2.0


@dataclass(frozen=True, slots=True)
class Vetoes:
    """What the action veto withholds from a class: ``vetoed`` actions are not offered;
    ``confounded`` ones (a subset) are vetoed only on trajectories that also took another
    vetoed action, and may be tried again alone (``ClassFloor.retrials``)."""

    vetoed: frozenset[str] = frozenset()
    confounded: frozenset[str] = frozenset()


@dataclass(slots=True)
class ClassFloor:
    """Judged quality of a class's trajectories, on its fixed pipeline and off it, and off
    it per set of deviating actions taken together (``paths``)."""

    baseline: RunningStat = field(default_factory=RunningStat)
    deviated: RunningStat = field(default_factory=RunningStat)
    #: per set of deviating actions, the judged quality of the trajectories that took it
    paths: dict[frozenset[str], RunningStat] = field(default_factory=dict)

    def merge(self, other: "ClassFloor") -> "ClassFloor":
        paths = {key: stat.merge(RunningStat()) for key, stat in self.paths.items()}
        for key, stat in other.paths.items():
            paths[key] = paths.get(key, RunningStat()).merge(stat)
        return ClassFloor(
            self.baseline.merge(other.baseline), self.deviated.merge(other.deviated), paths
        )

    def scaled(self, weight: float) -> "ClassFloor":
        """The floor with every count scaled by ``weight`` (a warm start's prior strength);
        means and variances are kept."""
        return ClassFloor(
            self.baseline.scaled(weight),
            self.deviated.scaled(weight),
            {key: stat.scaled(weight) for key, stat in self.paths.items()},
        )

    def slack(self, tolerance: float, z: float, budget: float = 0.0) -> float:
        """What the class may still lose against its pipeline's quality before the next
        trajectory must run the pipeline (negative: it must); -inf before the pipeline ran."""
        if self.baseline.count <= 0:
            return -math.inf
        m0 = self.baseline.mean
        n1 = self.deviated.count
        margin = z * math.sqrt(self.deviated.variance * n1)
        earned = n1 * self.deviated.mean - margin - n1 * m0
        return earned + (self.baseline.count + n1 + 1.0) * tolerance + budget

    def open(self, tolerance: float, z: float, budget: float = 0.0) -> bool:
        return self.slack(tolerance, z, budget) >= 0.0

    @property
    def tried(self) -> frozenset[str]:
        """Every deviating action some trajectory of the class took."""
        return frozenset().union(*self.paths)

    def taking(self, action: str, besides: frozenset[str] = frozenset()) -> RunningStat:
        """The judged quality of the trajectories that took ``action`` and none of
        ``besides``."""
        stat = RunningStat()
        for key, path in self.paths.items():
            if action in key and not key & besides:
                stat = stat.merge(path)
        return stat

    def vetoes(self, tolerance: float, z: float, noise: float) -> Vetoes:
        """The actions whose trajectories' mean quality, at its upper confidence bound
        (the bound of its difference from the pipeline's mean; variances at least
        ``noise``), is below the pipeline's mean less ``tolerance``.
        Such an action stays vetoed if the same holds of its trajectories without the
        other actions so found, or if it has none (confounded); it is cleared if those
        trajectories bound it above. None before the pipeline ran."""
        if self.baseline.count <= 0:
            return Vetoes()
        floor = self.baseline.mean - tolerance
        n0 = self.baseline.count

        def below(stat: RunningStat) -> bool:
            # the bound counts the pipeline mean's own error too: a rare class's is one run
            var = max(stat.variance, noise)
            return stat.mean + z * math.sqrt(var / stat.count + var / n0) < floor

        suspect = frozenset(a for a in self.tried if below(self.taking(a)))
        vetoed, confounded = set(), set()
        for action in suspect:
            alone = self.taking(action, suspect - {action})
            if alone.count <= 0:
                confounded.add(action)
            if alone.count <= 0 or below(alone):
                vetoed.add(action)
        return Vetoes(frozenset(vetoed), frozenset(confounded))

    def retrials(self, vetoes: Vetoes, tolerance: float, z: float) -> frozenset[str]:
        """The confounded actions the class can afford to try again alone: those whose
        trajectories' mean shortfall against the pipeline is within what the class has
        earned without its learning budget (the conservative rule, counting the retrial
        at that mean)."""
        earned = self.slack(tolerance, z)
        m0 = self.baseline.mean
        return frozenset(a for a in vetoes.confounded if earned >= m0 - self.taking(a).mean)


def warned(vetoes: Mapping[str, Vetoes], floors: Mapping[str, ClassFloor]) -> frozenset[str]:
    """The actions some class vetoes on evidence of their own (not confounded), or that
    classes veto confounded on at least two classes' worth of trajectories (each class's
    trajectories that took the action, at most one a class: an imported floor counts at its
    prior strength): a class that has not tried one is not offered it, because a fatal
    action is fatal to whoever takes it first, and a rare class takes it when a frequent one
    has long learned it. One confounded veto does not say which of its actions did the
    harm; the action that two classes' confounded vetoes share is the harm's simplest
    explanation on both (a rare class's regime-mates each lose a first trajectory on its
    fatal skip beside other ones)."""
    own = frozenset().union(*(v.vetoed - v.confounded for v in vetoes.values()))
    weight: dict[str, float] = {}
    for name, found in vetoes.items():
        for action in found.confounded:
            taken = min(1.0, floors[name].taking(action).count)
            weight[action] = weight.get(action, 0.0) + taken
    return own | frozenset(a for a, w in weight.items() if w >= CORROBORATING_CLASSES)


def pipeline_noise(floors: Mapping[str, ClassFloor]) -> float:
    """The pooled variance of judged quality within each class's pipeline runs (0 before
    any class has two)."""
    m2 = sum(f.baseline.m2 for f in floors.values() if f.baseline.count > 1)
    dof = sum(f.baseline.count - 1.0 for f in floors.values() if f.baseline.count > 1)
    return m2 / dof if dof > 0 else 0.0


def deviations(state: TrajectoryState, pool: CellPool) -> frozenset[str]:
    """The actions of the trajectory that left its fixed pipeline (retries and failures
    included)."""
    return frozenset(edge.action for edge in state.visited if pool.deviates(edge.action))


def on_fixed_pipeline(state: TrajectoryState, pool: CellPool) -> bool:
    """Whether every step of the trajectory ran its cell's default variant (retries and
    failures included) and none was skipped."""
    return not deviations(state, pool)


def record_classes(
    floors: dict[str, ClassFloor],
    pool: CellPool,
    trajectories: Sequence[tuple[TrajectoryState, float]],
) -> None:
    """Add each judged trajectory of a known class to its class's floor; ``float`` is the
    judged quality."""
    for state, quality in trajectories:
        if state.task_class is None:
            continue
        floor = floors.setdefault(state.task_class, ClassFloor())
        taken = deviations(state, pool)
        if taken:
            floor.deviated.add(quality)
            floor.paths.setdefault(taken, RunningStat()).add(quality)
        else:
            floor.baseline.add(quality)
