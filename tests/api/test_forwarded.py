"""The client address behind proxies: every X-Forwarded-For line counts, and an IPv4 proxy is known when a server
on "::" sees it as an IPv4-mapped IPv6 address."""

from __future__ import annotations

from ipaddress import ip_network

from masuka.guards import Proxies, client_address

LISTED = Proxies((ip_network("10.0.0.0/24"),))  # MASUKA_TRUSTED_PROXIES=10.0.0.0/24


def test_a_proxy_adding_its_own_header_line_is_read_after_the_client_s_forged_line():
    # HAProxy's "option forwardfor" appends a line of its own: the client's forged line stays first
    headers = [(b"x-forwarded-for", b"203.0.113.66"), (b"x-forwarded-for", b"93.184.215.14")]
    assert client_address({"client": ("10.0.0.2", 5000), "headers": headers}, LISTED) == "93.184.215.14"


def test_lines_join_in_order_before_the_trusted_proxies_are_skipped():
    headers = [(b"x-forwarded-for", b"203.0.113.66, 93.184.215.14"), (b"x-forwarded-for", b"10.0.0.7")]
    assert client_address({"client": ("10.0.0.2", 5000), "headers": headers}, LISTED) == "93.184.215.14"


def test_an_ipv4_proxy_seen_by_a_server_on_all_ipv6_addresses_is_trusted():
    assert LISTED.trust("::ffff:10.0.0.2")
    assert not LISTED.trust("::ffff:10.0.1.2")
    headers = [(b"x-forwarded-for", b"203.0.113.66, 93.184.215.14, ::ffff:10.0.0.7")]
    assert client_address({"client": ("::ffff:10.0.0.2", 5000), "headers": headers}, LISTED) == "93.184.215.14"


def test_an_ipv4_mapped_peer_outside_the_proxies_keeps_its_own_address():
    headers = [(b"x-forwarded-for", b"93.184.215.14")]
    assert client_address({"client": ("::ffff:10.0.1.5", 5000), "headers": headers}, LISTED) == "::ffff:10.0.1.5"
