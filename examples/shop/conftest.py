# The catalog's ready fixtures (redis, postgres, s3, http_stub): opted into here, in the
# root conftest, the one place pytest_plugins may be set.
pytest_plugins = ["kubefixtures.catalog.fixtures"]
