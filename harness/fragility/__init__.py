"""T4 fragility (ExplainFooler, paper 000): the attack, its constraints and resources, metrics,
tables and plots.  The task itself is :mod:`tasks.fragility`; see docs/FRAGILITY.md."""
