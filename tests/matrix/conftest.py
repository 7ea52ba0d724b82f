"""The controller matrix: marker."""


def pytest_configure(config):
    config.addinivalue_line("markers", "matrix: an older ansible-core line of the controller matrix (slow)")
