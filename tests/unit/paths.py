"""Where the unit tests find the collection's files and Kuma's golden rule sets,
wherever they run from: pytest in the checkout, or ansible-test units in a
collection path (through the ansible_collections/kuma/mesh link, hence realpath).

    from ansible_collections.kuma.mesh.tests.unit.paths import ROOT, GOLDEN
"""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
# ../shared beside the checkout (CI's layout); KUMA_MESH_SHARED points elsewhere
SHARED = os.environ.get("KUMA_MESH_SHARED") or os.path.join(os.path.dirname(ROOT), "shared")
GOLDEN = os.path.join(SHARED, "kuma-golden")
