"""The Envoy stand-in's inbound passthrough binds 127.0.0.6 / ::6 as Kuma's inbound passthrough cluster does, so
that a connection to a loopback address other than 127.0.0.1 (Kuma's validator's 127.0.0.6, which
kuma_tproxy_check's inbound probe uses against the running proxy) is not redirected back to the inbound listener
by Kuma's rules - a loop that used to exhaust the stand-in and break every later inbound connection."""

import importlib.util
import os
import socket

from ansible_collections.kuma.mesh.tests.unit.paths import ROOT

spec = importlib.util.spec_from_file_location("standin_envoy_passthrough",
                                              os.path.join(ROOT, "tests", "standins", "envoy.py"))
envoy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(envoy)


def listener(direction="INBOUND", inbounds=()):
    return envoy.ListenerSpec({
        "name": "inbound:passthrough", "useOriginalDst": True, "trafficDirection": direction,
        "address": {"socketAddress": {"address": "0.0.0.0", "portValue": 15006}},
        "metadata": {"filterMetadata": {"io.kuma.standin": {"inbounds": list(inbounds)}}}})


def test_passthrough_to_a_loopback_address_binds_the_passthrough_source():
    proxy = envoy.Proxy([])
    assert proxy.upstream_for(listener(), ("127.0.0.6", 24242)) == (("127.0.0.6", 24242), "127.0.0.6")
    assert proxy.upstream_for(listener(), ("::6", 24242)) == (("::6", 24242), "::6")
    assert proxy.upstream_for(listener(), ("192.0.2.1", 8081)) == (("192.0.2.1", 8081), "127.0.0.6")


def test_a_declared_inbound_reaches_its_workload_on_the_loopback_from_the_loopback():
    inbound = {"port": 9090, "dataplaneIP": "192.0.2.1", "workloadIP": "127.0.0.1", "workloadPort": 9090}
    proxy = envoy.Proxy([])
    assert proxy.upstream_for(listener(inbounds=[inbound]), ("192.0.2.1", 9090)) == (("127.0.0.1", 9090), None)
    outbound = listener(direction="OUTBOUND")
    assert proxy.upstream_for(outbound, ("203.0.113.1", 80)) == (("203.0.113.1", 80), None)
    assert socket  # the stand-in's own module
