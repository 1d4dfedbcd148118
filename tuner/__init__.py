"""Studies, storage, Pareto fronts, export and the ``tuner`` command line."""
