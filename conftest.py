# The convcheck pytest plugin: options, Hypothesis profiles, backend parametrization.
pytest_plugins = ["conformance.pytest_plugin"]
