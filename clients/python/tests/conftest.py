# The daemon is started by test/python-client.test.ts (vitest), which runs
# this suite with its address, CA and tokens in the environment.
import os
import sys
import uuid

import pytest

# The package is imported from this checkout, not an installed copy.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import cairn_client  # noqa: E402


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run these tests through `npx vitest run test/python-client.test.ts`", 2)
    return value


@pytest.fixture(scope="session")
def daemon():
    with open(_env("CAIRN_CA_FILE"), "rb") as f:
        ca = f.read()
    return {
        "address": _env("CAIRN_ADDRESS"),
        "ca": ca,
        "admin_token": _env("CAIRN_ADMIN_TOKEN"),
        "writer_token": _env("CAIRN_WRITER_TOKEN"),
    }


@pytest.fixture
def namespace():
    # A namespace per test: nothing one test makes is seen by another.
    return "py-" + uuid.uuid4().hex[:12]


@pytest.fixture
def connect(daemon):
    made = []

    def make(token=None, namespace=None, **kwargs):
        client = cairn_client.Client(daemon["address"], token=token, namespace=namespace, tls={"ca": daemon["ca"]}, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def admin(daemon, connect, namespace):
    return connect(token=daemon["admin_token"], namespace=namespace)
