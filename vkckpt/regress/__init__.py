"""`vkckpt regress`: the checkpoint regression suite run before every release.

It builds on vkckpt.testing (workloads, Outcome, state digests, the schedule-point recorder).

cases.py   the workloads, case kinds and the quick/full profiles
run.py     running the cases (in worker processes with --jobs) and collecting results
trial.py   one case's context: its root, golden run, thaws here and in fresh host processes
kinds/     one module per kind of case (points, iterated, chain, ckpt_signals, ckpt_self,
           fixture) and the KINDS table naming their runners
bisect.py  narrowing a divergence to a scheduling point and naming the state that differs
imagestate.py, imagediff.py   images read back as comparable state; their differences in words
report.py  the results table, failure reports and JUnit XML
"""
