pytest_plugins = ["zoo.testing"]
