"""The rule kinds, one module each, looked up by the `rule:` attribute of a target."""

from .base import ConfiguredTarget, Rule, RuleContext
from .command import CommandRule

RULES: dict[str, Rule] = {rule.name: rule for rule in (CommandRule(),)}

__all__ = ["RULES", "ConfiguredTarget", "Rule", "RuleContext"]
