"""The user's own backward rules, and which source gives each gradient.

A `RuleSet` is one source of rules: the rules written in a case file (`runner.rules.case`,
source ``"case"``) or a RULES module of a user's engine (`runner.rules.modules`, source
``"module rules.py"``). The engine asks the rule sets of a run in order, per node, and falls back
to the catalogue (source ``"catalogue"``) for every argument none of them answers.

The calling protocol, the same for both kinds: ``rule(grad, out, args) -> {argument: gradient}``
where ``grad`` is the upstream gradient of the node's output (an array of ``out``'s shape),
``out`` the node's forward value and ``args`` every parameter of the op by torch's name (arrays
for tensors, lists of arrays for list parameters, plain values for attributes, defaults filled
in). A missing key, or None, leaves that argument to the next source. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

CATALOGUE = "catalogue"
CASE = "case"

RuleFn = Callable[[Any, Any, dict[str, Any]], Mapping[str, Any] | None]


@dataclass(frozen=True)
class RuleSet:
    """Rules by op name from one source.

    ``where`` says, per op (or per ``op.argument``), where the rule is written
    (``cases/x.yaml:7:12``, ``rules.py:30``), and ``texts`` what it is (``grad @ other.T``,
    ``rule_max``), for messages.
    """

    source: str
    rules: Mapping[str, RuleFn]
    where: Mapping[str, str] = field(default_factory=dict)
    texts: Mapping[str, str] = field(default_factory=dict)
    # Ops the source defines itself (a RULES module's OPS), by name: `runner.ops.spec.Op`s.
    ops: Mapping[str, Any] = field(default_factory=dict)

    def locate(self, op: str, argument: str | None = None) -> str:
        return _lookup(self.where, op, argument)

    def text(self, op: str, argument: str | None = None) -> str:
        return _lookup(self.texts, op, argument)


def _lookup(table: Mapping[str, str], op: str, argument: str | None) -> str:
    if argument is not None and f"{op}.{argument}" in table:
        return table[f"{op}.{argument}"]
    return table.get(op, "")
