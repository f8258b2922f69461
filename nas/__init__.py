"""The program: CLI, data, training, evaluators, search, dashboards and reports."""
