"""May the challenger replace the champion? The repo's one promotion rule, with every guard, in one place.

`decide_promotion` promotes only when every rule passes, and each rule answers with its numbers, so a
refusal always says which rule refused and why:

1. judge rows: at least `min_judge_rows` labelled rows to judge on; fewer make any interval too wide to
   say anything;
2. gain: the lower end of the challenger's gain interval on those rows (paired bootstrap at `confidence`)
   exceeds `min_gain` (`pipelines.common.bootstrap.decide`, the rule of the churn gate and of the export's
   champion comparison too): a likely but tiny gain does not win, and an equivalent model wins rarely;
3. test split: on each of `test_metrics`, the challenger's registered test metric (measured at export on
   the curated test split) trails the champion's by at most `test_tolerance`: a model that learned recent
   traffic must not forget the cases the curated split holds;
4. cost: at each model's served threshold, the challenger's business cost per judge row exceeds the
   champion's by at most `cost_tolerance` (a share): ranking better is not enough if the decisions the
   server makes cost more. Judged for binary models with outcome costs configured, else reported as not
   judged;
5. cooldown: at least `cooldown_hours` since the last promotion (`registry.last_promotion`), so a stream
   of alerts cannot flip the champion back and forth.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from pipelines.common.bootstrap import METRICS, Decision, decide
from pipelines.common.config import OutcomeCosts, PromotionConfig

ROWS, GAIN, TEST_SPLIT, COST, COOLDOWN = "judge rows", "gain", "test split", "cost", "cooldown"
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Check:
    """One rule's answer: passed or not, in words with its numbers, and the numbers for MLflow."""

    rule: str
    passed: bool
    detail: str
    numbers: dict[str, float]

    def __str__(self) -> str:
        return f"{self.rule} {'ok' if self.passed else 'REFUSED'}: {self.detail}"


@dataclass(frozen=True)
class Side:
    """One model's evidence: probabilities and served decisions (class indices) on the judge rows, and the
    test metrics registered with it (`test_<metric>`)."""

    probabilities: np.ndarray
    decisions: np.ndarray
    test_metrics: dict[str, float]


@dataclass(frozen=True)
class Evidence:
    y: np.ndarray  # the judge rows' true class indices
    champion: Side
    challenger: Side
    positive: int | None = None  # a binary model's positive class index, for costs; None: not judged
    last_promotion: float | None = None  # Unix seconds of the last promotion; None: none recorded
    now: float | None = None  # Unix seconds of the verdict (None: now)


@dataclass(frozen=True)
class Verdict:
    decision: Decision  # the gain rule's evidence (paired bootstrap)
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def refused_by(self) -> list[str]:
        return [check.rule for check in self.checks if not check.passed]

    def reason(self, challenger: str, champion: str) -> str:
        rules = "; ".join(str(check) for check in self.checks)
        if self.passed:
            return f"{challenger} beats {champion}, every rule passed: {rules}"
        return f"{challenger} not promoted over {champion}, refused by {', '.join(self.refused_by)}: {rules}"

    def as_metrics(self) -> dict[str, float]:
        """`rule_<rule>_passed` and each rule's numbers, for MLflow."""
        metrics = {}
        for check in self.checks:
            key = check.rule.replace(" ", "_")
            metrics[f"rule_{key}_passed"] = float(check.passed)
            metrics |= {f"rule_{key}_{name}": float(value) for name, value in check.numbers.items()}
        return metrics

    def as_dict(self) -> dict:
        return {"passed": self.passed, "refused_by": self.refused_by, "decision": self.decision.as_dict(),
                "checks": [asdict(check) for check in self.checks]}


# ---------------------------------------------------------------------------------------------- rules
def check_rows(rows: int, rule: PromotionConfig) -> Check:
    return Check(ROWS, rows >= rule.min_judge_rows, f"{rows} labelled rows to judge on, need {rule.min_judge_rows}",
                 {"rows": rows, "required": rule.min_judge_rows})


def check_gain(decision: Decision) -> Check:
    detail = (f"{decision.metric} {decision.challenger:.4f} vs {decision.incumbent:.4f}, "
              f"gain {decision.mean_gain:+.4f}, lower bound at {decision.required:.0%} {decision.gain_ci_low:+.4f} "
              f"{'>' if decision.passed else '<='} margin {decision.min_gain:+.4f} "
              f"(P(better) = {decision.p_better:.2f}, {decision.resamples} paired resamples of {decision.rows} rows)")
    numbers = {"lower_bound": decision.gain_ci_low, "margin": decision.min_gain, "mean": decision.mean_gain}
    return Check(GAIN, decision.passed, detail, numbers)


def trailing(metric: str, champion: float, challenger: float) -> float:
    """How far the challenger is behind the champion on `metric` (negative: ahead), whatever its sign."""
    higher_is_better = METRICS[metric][1]
    return champion - challenger if higher_is_better else challenger - champion


def compare_test_metric(metric: str, champion: dict[str, float], challenger: dict[str, float],
                        tolerance: float) -> tuple[bool, str, float | None]:
    """One registered `test_<metric>`: within tolerance?, in words, and how far behind (None: missing)."""
    key = f"test_{metric}"
    for owner, metrics in (("champion", champion), ("challenger", challenger)):
        if key not in metrics:  # unknown is not "no regression"
            return False, f"{key} not registered with the {owner}: cannot check", None
    behind = trailing(metric, champion[key], challenger[key])
    return (behind <= tolerance, f"{key} {challenger[key]:.4f} vs {champion[key]:.4f} (behind by {behind:+.4f}, "
            f"allowed {tolerance:.4f})", behind)


def check_test_split(champion: dict[str, float], challenger: dict[str, float], rule: PromotionConfig) -> Check:
    results = {metric: compare_test_metric(metric, champion, challenger, rule.test_tolerance)
               for metric in rule.test_metrics}
    numbers = {f"{metric}_behind": behind for metric, (_, _, behind) in results.items() if behind is not None}
    return Check(TEST_SPLIT, all(ok for ok, _, _ in results.values()),
                 "; ".join(text for _, text, _ in results.values()), numbers)


def cost_per_row(y: np.ndarray, decisions: np.ndarray, positive: int, costs: OutcomeCosts) -> float:
    """Mean cost of the decisions a binary model served, by outcome."""
    actual, flagged = np.asarray(y) == positive, np.asarray(decisions) == positive
    total = (costs.true_positive * np.sum(actual & flagged) + costs.false_positive * np.sum(~actual & flagged)
             + costs.false_negative * np.sum(actual & ~flagged) + costs.true_negative * np.sum(~actual & ~flagged))
    return float(total / len(actual))


def check_cost(evidence: Evidence, costs: OutcomeCosts | None, rule: PromotionConfig) -> Check:
    if costs is None or evidence.positive is None:
        return Check(COST, True, "not judged (no outcome costs for this model)", {})
    champion = cost_per_row(evidence.y, evidence.champion.decisions, evidence.positive, costs)
    challenger = cost_per_row(evidence.y, evidence.challenger.decisions, evidence.positive, costs)
    rise = (challenger - champion) / champion if champion > 0 else (np.inf if challenger > 0 else 0.0)
    detail = (f"per row at the served thresholds {challenger:.2f} vs {champion:.2f} ({rise:+.1%}, "
              f"allowed +{rule.cost_tolerance:.1%})")
    return Check(COST, rise <= rule.cost_tolerance, detail,
                 {"champion": champion, "challenger": challenger, "rise": rise})


def check_cooldown(last_promotion: float | None, now: float | None, rule: PromotionConfig) -> Check:
    if last_promotion is None:
        return Check(COOLDOWN, True, "no earlier promotion recorded", {})
    hours = ((time.time() if now is None else now) - last_promotion) / SECONDS_PER_HOUR
    return Check(COOLDOWN, hours >= rule.cooldown_hours,
                 f"{hours:.2f} h since the last promotion, need {rule.cooldown_hours:g} h",
                 {"hours_since": hours, "required_hours": rule.cooldown_hours})


# --------------------------------------------------------------------------------------------- verdict
def gain_decision(evidence: Evidence, rule: PromotionConfig, seed: int) -> Decision:
    return decide(evidence.y, evidence.champion.probabilities, evidence.challenger.probabilities, metric=rule.metric,
                  samples=rule.bootstrap_samples, confidence=rule.confidence, seed=seed, min_gain=rule.min_gain)


def decide_promotion(evidence: Evidence, rule: PromotionConfig, *, costs: OutcomeCosts | None = None,
                     seed: int = 0) -> Verdict:
    """Every rule on the same evidence; the challenger is promoted only when all pass."""
    decision = gain_decision(evidence, rule, seed)
    checks = (check_rows(len(evidence.y), rule), check_gain(decision),
              check_test_split(evidence.champion.test_metrics, evidence.challenger.test_metrics, rule),
              check_cost(evidence, costs, rule), check_cooldown(evidence.last_promotion, evidence.now, rule))
    return Verdict(decision, checks)
