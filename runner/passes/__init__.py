"""The compiler's passes, each a function from typed inputs to a frozen result, run in this
order by `runner.compile.compile_case`:

- `lower.lower_case` -> `Lowered`: names, nodes, static shapes, every operand's `Use`;
- `integers.settle_integers` -> `Integers`: which integer-written inputs are int64;
- `requires.settle_requires` -> `Requires`: which inputs and nodes require grad;
- `resolve.resolve` -> `Resolved`: output, upstream, check and expect.

Problems are collected as data in each result; no pass raises for a case's mistake.
"""
