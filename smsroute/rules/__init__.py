"""Routing rules: the YAML model, loading with file:line errors, indexed matching, explain, hot reload."""

from .loader import Problem, RuleError, load_rules
from .matcher import Explanation, RoutedAction, Routing, RuleSet
from .model import first_word

__all__ = ["Explanation", "RoutedAction", "Problem", "RuleError", "RuleSet", "Routing", "first_word", "load_rules"]
