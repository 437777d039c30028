"""What a group of failures has in common: the shortest rule over case features that tells the
group's failing cases from the cases the same backend passed.

A *feature* is a yes/no question about a case (``groups > 1``, ``dtype = float16``, ``stride >
1``); a *literal* is a feature or its negation; a *rule* is a conjunction of up to
:data:`MAX_LITERALS` literals. For a failure group (one backend), :func:`infer_rule` looks at
every rule, shortest first, and returns the one that separates best:

1. a rule that holds for every failure of the group and for no passing case of that backend
   (recall 1, precision 1) — the shortest such rule, ties broken by the order of
   :data:`FEATURES` (the ones a kernel author reads first come first);
2. else, per length, the rule with the best F1 score (then higher precision), and of those the
   shortest within :data:`PARSIMONY` of the best F1.

A group with fewer than :data:`MIN_FAILURES` failures gets no rule (one or two cases fit many).

Precision and recall are printed with the rule (``groups > 1: 152/152 failures, 0/265
passes``), so a reviewer sees how exact it is. Unlike Hypothesis' explain phase, which varies
one example, the rule is learned over the whole run: every passing case of the backend is a
counterexample the rule must exclude.

Every rule is evaluated as bit sets (one Python int per literal, a bit per case), so the search
over all conjunctions of up to three literals stays a few milliseconds for thousands of cases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

from conformance.case import Case, parse_id
from conformance.known_failures import PREDICATES

#: The most literals a rule may have: longer conjunctions read as an enumeration, not a rule.
MAX_LITERALS = 3
#: A longer rule is chosen only if its F1 score beats every shorter one's by more than this.
PARSIMONY = 0.02
#: Fewer failures than this describe an example, not a pattern: no rule is inferred.
MIN_FAILURES = 3


#: (name, negated name, predicate), in the order a reader looks for them; where a known-failures
#: predicate asks the same question, it is that predicate. Categorical features (op, spatial
#: dims, dtype, fill) are one feature per value, added by :func:`_categorical`.
FEATURES: tuple[tuple[str, str, Callable[[Case], bool]], ...] = (
    ("groups > 1", "groups = 1", lambda c: c.groups > 1),
    ("depthwise", "not depthwise", lambda c: c.groups > 1 and c.groups == c.in_channels),
    (
        "one input channel per group",
        "several input channels per group",
        PREDICATES["one_input_channel_per_group"],
    ),
    ("stride > 1", "stride = 1", lambda c: any(s > 1 for s in c.stride)),
    ("padding > 0", "no padding", lambda c: any(p > 0 for p in c.padding)),
    (
        "padding > dilation*(kernel-1)",
        "padding <= dilation*(kernel-1)",
        PREDICATES["padding_exceeds_dilated_kernel"],
    ),
    ("dilation > 1", "dilation = 1", lambda c: any(d > 1 for d in c.dilation)),
    ("output_padding > 0", "no output_padding", lambda c: any(o > 0 for o in c.output_padding)),
    ("bias", "no bias", lambda c: c.bias),
    ("batch >= 3", "batch <= 2", lambda c: c.batch >= 3),
    ("batch >= 2", "batch = 1", PREDICATES["batch_above_one"]),
    ("kernel > 1", "kernel = 1", lambda c: any(k > 1 for k in c.kernel)),
    ("an odd input size", "even input sizes", lambda c: any(s % 2 for s in c.spatial)),
    ("an input size of 1", "input sizes > 1", lambda c: 1 in c.spatial),
    ("channels > 8", "channels <= 8", lambda c: max(c.in_channels, c.out_channels) > 8),
)


@dataclass(frozen=True)
class Rule:
    """A conjunction of literals and how well it separates one group from the passes."""

    literals: tuple[str, ...]
    failures_matched: int
    failures: int
    passes_matched: int
    passes: int

    @property
    def exact(self) -> bool:
        return self.failures_matched == self.failures and self.passes_matched == 0

    @property
    def precision(self) -> float:
        matched = self.failures_matched + self.passes_matched
        return self.failures_matched / matched if matched else 0.0

    @property
    def recall(self) -> float:
        return self.failures_matched / self.failures if self.failures else 0.0

    @property
    def text(self) -> str:
        return " and ".join(self.literals) if self.literals else "every case"

    def __str__(self) -> str:
        return (
            f"{self.text}: {self.failures_matched}/{self.failures} failures, "
            f"{self.passes_matched}/{self.passes} passes"
        )


def _categorical(cases: Sequence[Case]) -> list[tuple[str, str, Callable[[Case], bool]]]:
    out: list[tuple[str, str, Callable[[Case], bool]]] = []
    for label, key in (
        ("op", lambda c: c.op),
        ("dtype", lambda c: c.dtype),
        ("fill", lambda c: c.fill),
    ):
        for value in sorted({key(c) for c in cases}):
            out.append(
                (f"{label} = {value}", f"{label} != {value}", lambda c, k=key, v=value: k(c) == v)
            )
    for nd in sorted({c.ndim for c in cases}):
        out.append((f"{nd}-D", f"not {nd}-D", lambda c, n=nd: c.ndim == n))
    return out


def _literal_masks(cases: Sequence[Case]) -> list[tuple[str, int]]:
    """Every literal with the bit set of the cases it holds for (bit i: ``cases[i]``); a literal
    true for all cases or for none says nothing and is left out, and so is a second literal with
    the same bit set as an earlier one (the earlier name is the one a reader looks for)."""
    everything = (1 << len(cases)) - 1
    seen: set[int] = set()
    out: list[tuple[str, int]] = []
    for name, negated, test in (*FEATURES, *_categorical(cases)):
        mask = 0
        for i, case in enumerate(cases):
            if test(case):
                mask |= 1 << i
        for label, m in ((name, mask), (negated, everything & ~mask)):
            if m in (0, everything) or m in seen:
                continue
            seen.add(m)
            out.append((label, m))
    return out


def _score(rule: Rule) -> tuple[float, int, float]:
    p, r = rule.precision, rule.recall
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return (f1, -len(rule.literals), p)


def infer_rule(failing: Iterable[Case], passing: Iterable[Case]) -> Rule | None:
    """The rule that best tells ``failing`` from ``passing`` (see the module docstring); the
    empty rule ("every case") when there is no passing case, None for fewer than
    :data:`MIN_FAILURES` failures."""
    fails = list(failing)
    passes = list(passing)
    if len(fails) < MIN_FAILURES:
        return None
    if not passes:  # nothing to tell them from: the rule is the group itself
        return Rule((), len(fails), len(fails), 0, 0)
    cases = fails + passes
    fail_mask = (1 << len(fails)) - 1
    literals = _literal_masks(cases)

    def rule_of(chosen: tuple[tuple[str, int], ...]) -> Rule:
        mask = (1 << len(cases)) - 1
        for _, m in chosen:
            mask &= m
        return Rule(
            tuple(name for name, _ in chosen),
            (mask & fail_mask).bit_count(),
            len(fails),
            (mask & ~fail_mask).bit_count(),
            len(passes),
        )

    best_per_size: list[Rule] = []
    for size in range(1, MAX_LITERALS + 1):
        best: Rule | None = None
        for chosen in combinations(literals, size):
            rule = rule_of(chosen)
            if rule.failures_matched == 0:
                continue
            if rule.exact:
                best = rule
                break
            if best is None or _score(rule) > _score(best):
                best = rule
        if best is not None:
            best_per_size.append(best)
            if best.exact:
                break
    if not best_per_size:
        return None
    # The shortest rule within PARSIMONY of the best F1: a third literal that only excludes a
    # few degenerate passes describes the run, not the bug.
    top = max(_score(r)[0] for r in best_per_size)
    return next(r for r in best_per_size if _score(r)[0] >= top - PARSIMONY)


def cases_of(case_ids: Iterable[str]) -> list[Case]:
    """The parsed cases of ``case_ids``; ids that do not parse (a plugin's own) are skipped."""
    out = []
    for cid in case_ids:
        try:
            out.append(parse_id(cid))
        except ValueError:
            continue
    return out
