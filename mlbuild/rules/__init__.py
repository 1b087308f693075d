"""The rule kinds, one module each, looked up by the `rule:` attribute of a target."""

from .accuracy import AccuracyCheckerRule
from .alias import AliasRule, GroupRule
from .base import ConfiguredTarget, Rule, RuleContext
from .bench import BenchRule
from .command import CommandRule
from .compliance import ComplianceRule
from .download import DownloadRule
from .engine import EngineRule
from .python import PythonRule
from .search import PerformanceSearchRule
from .submission import SubmissionRule
from .training import TrainingRule

RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (CommandRule(), PythonRule(), DownloadRule(), EngineRule(), BenchRule(),
                 AccuracyCheckerRule(), ComplianceRule(), PerformanceSearchRule(), SubmissionRule(),
                 TrainingRule(), AliasRule(), GroupRule())
}

# Executors that rules add to the built-in ones (mlbuild.execution.executors.BUILTIN_EXECUTORS).
EXECUTORS = {name: executor for rule in RULES.values() for name, executor in rule.executors.items()}

__all__ = ["EXECUTORS", "RULES", "ConfiguredTarget", "Rule", "RuleContext"]
