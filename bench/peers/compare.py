"""Strict comparison of answers: every series, every point, every value within float tolerance."""

from __future__ import annotations

import math
from dataclasses import dataclass

from questions import Answer, points

REL_TOL = 1e-9
"""Relative tolerance of a value: float summation order differs between systems, nothing else may."""
ABS_TOL = 1e-9
"""Absolute tolerance, for values at or near 0."""
TS_TOL = 1e-3
"""Timestamps are whole seconds in the data; a canonical ts may differ by float rounding only."""


@dataclass(frozen=True)
class Verdict:
    """The outcome of comparing a question's answers.

    Attributes:
        agree: every answer equals the reference in every series and point.
        text: one line: 'agree (...)' or 'DIFFER: ...' with the first differences found.
        points: points per answer.
    """

    agree: bool
    text: str
    points: dict[str, int]


def differences(reference: Answer, other: Answer, limit: int = 3) -> list[str]:
    """Where `other` differs from `reference`: series missing or extra, points missing, values apart."""
    found: list[str] = []
    missing = sorted(set(reference) - set(other))
    extra = sorted(set(other) - set(reference))
    if missing:
        found.append(f"{len(missing)} series missing (e.g. {missing[0]!r})")
    if extra:
        found.append(f"{len(extra)} series extra (e.g. {extra[0]!r})")
    for key in sorted(set(reference) & set(other)):
        ref, got = reference[key], other[key]
        if len(ref) != len(got):
            found.append(f"{key!r}: {len(got)} points, expected {len(ref)}")
            continue
        for (t0, v0), (t1, v1) in zip(ref, got, strict=True):
            if abs(t0 - t1) > TS_TOL:
                found.append(f"{key!r}: point at ts {t1:.0f}, expected ts {t0:.0f}")
                break
            if not math.isclose(v0, v1, rel_tol=REL_TOL, abs_tol=ABS_TOL):
                found.append(f"{key!r} at ts {t0:.0f}: {v1!r}, expected {v0!r}")
                break
        if len(found) >= limit:
            break
    return found[:limit]


def compare(answers: dict[str, Answer]) -> Verdict:
    """Compare every answer with the first one (the reference); empty answers never agree."""
    names = list(answers)
    counts = {n: points(answers[n]) for n in names}
    if len(names) < 2:
        return Verdict(False, "only one answer: nothing compared", counts)
    reference = answers[names[0]]
    problems = [] if counts[names[0]] else [f"{names[0]}: empty answer"]
    for name in names[1:]:
        diff = differences(reference, answers[name])
        if diff:
            problems.append(f"{name} vs {names[0]}: " + "; ".join(diff))
    summary = ", ".join(f"{n} {c}" for n, c in counts.items())
    if problems:
        return Verdict(False, "DIFFER: " + " | ".join(problems) + f" (points: {summary})", counts)
    n_series = len(reference)
    return Verdict(
        True, f"agree: {len(names)} answers, {n_series} series, {counts[names[0]]} points each", counts
    )
