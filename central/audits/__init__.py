"""抽查核实, 回访监察: the monthly sample of finished cases and the auditor's call-backs."""
