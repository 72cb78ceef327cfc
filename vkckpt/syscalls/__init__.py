"""System calls: the table (table.py) and handlers grouped by family (sys_*.py)."""
