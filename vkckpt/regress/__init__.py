"""`vkckpt regress`: the checkpoint regression suite run before every release.

cases.py   the workloads, case kinds and the quick/full profiles
run.py     running a case against its golden run (thaws in fresh host processes)
bisect.py  narrowing a divergence to a scheduling point and naming the state that differs
report.py  the results table, failure reports and JUnit XML
"""
