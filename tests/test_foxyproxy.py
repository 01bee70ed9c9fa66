"""FoxyProxy settings for the EMR web UIs: foxyproxy-settings.xml (the format of the AWS EMR guide)
and foxyproxy-settings.json (FoxyProxy 8.x import) hold one SOCKS5 proxy on localhost:8157 with
remote DNS, and their wildcard patterns send the cluster's addresses, and only those, through it.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
XML_FILE = ROOT / "foxyproxy-settings.xml"
JSON_FILE = ROOT / "foxyproxy-settings.json"

#: The patterns of the AWS EMR guide, in its order.
EMR_PATTERNS = [
    "*ec2*.amazonaws.com*",
    "*ec2*.compute*",
    "http://10.*",
    "*10*.amazonaws.com*",
    "*10*.compute*",
    "*.compute.internal*",
    "*.ec2.internal*",
]

#: Addresses of an EMR primary node in eu-west-3 (public DNS, private DNS, private IP).
CLUSTER_URLS = [
    "http://ec2-15-188-1-2.eu-west-3.compute.amazonaws.com:9443/",
    "https://ec2-15-188-1-2.eu-west-3.compute.amazonaws.com:9443/hub/login",
    "http://ec2-15-188-1-2.eu-west-3.compute.amazonaws.com:18080/",
    "http://ip-10-0-1-23.eu-west-3.compute.internal:8088/",
    "http://ip-10-0-1-23.eu-west-3.compute.internal:8998/ui",
    "http://10.0.1.23:8088/cluster",
]

#: Ordinary sites that must not go through the tunnel.
OTHER_URLS = [
    "https://www.google.com/",
    "https://github.com/",
    "https://pypi.org/simple/",
    "https://eu-west-3.console.aws.amazon.com/emr/home",
    "http://192.168.1.10:8080/",
]


def foxyproxy8_wildcard_to_regex(pattern: str) -> str:
    """FoxyProxy 8's Pattern.convertWildcard: escape regex characters but * and ?, then * -> .*,
    ? -> ., and '://*.' also matches the bare domain. The result is searched (not anchored),
    case-insensitively, in the whole URL."""
    if pattern == "*":
        return r"\S+"
    regex = re.sub(r"[.+^${}()|\[\]\\]", lambda m: "\\" + m.group(0), pattern)
    regex = regex.replace("*", ".*").replace("?", ".")
    return regex.replace(r"://.*\.", r"://(.*\.)?")


def legacy_wildcard_to_regex(pattern: str) -> str:
    """FoxyProxy Standard before 8 (the XML format): the wildcard must match the whole URL."""
    escaped = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return "^" + escaped + "$"


def proxied(url: str, regexes: list[str]) -> bool:
    return any(re.search(regex, url, re.IGNORECASE) for regex in regexes)


@pytest.fixture(scope="module")
def xml_proxy() -> ET.Element:
    root = ET.parse(XML_FILE).getroot()
    assert root.tag == "foxyproxy"
    proxies = root.findall("./proxies/proxy")
    assert len(proxies) == 1
    return proxies[0]


@pytest.fixture(scope="module")
def json_settings() -> dict:
    return json.loads(JSON_FILE.read_text(encoding="utf-8"))


def test_xml_proxy_is_socks5_on_localhost_8157_with_remote_dns(xml_proxy: ET.Element) -> None:
    assert xml_proxy.get("name") == "emr-socks-proxy"
    assert xml_proxy.get("enabled") == "true"
    assert xml_proxy.get("proxyDNS") == "true"
    assert xml_proxy.get("mode") == "manual"
    conf = xml_proxy.find("manualconf")
    assert conf is not None
    assert conf.get("host") == "localhost"
    assert conf.get("port") == "8157"
    assert conf.get("isSocks") == "true"
    assert conf.get("socksversion") == "5"


def test_xml_holds_the_emr_wildcard_patterns(xml_proxy: ET.Element) -> None:
    matches = xml_proxy.findall("./matches/match")
    assert [m.get("pattern") for m in matches] == EMR_PATTERNS
    for match in matches:
        assert match.get("enabled") == "true"
        assert match.get("isRegEx") == "false"
        assert match.get("isBlackList") == "false"


def test_json_proxy_is_socks5_on_localhost_8157_with_remote_dns(json_settings: dict) -> None:
    assert json_settings["mode"] == "pattern"
    assert len(json_settings["data"]) == 1
    proxy = json_settings["data"][0]
    assert proxy["title"] == "emr-socks-proxy"
    assert proxy["active"] is True
    assert proxy["type"] == "socks5"
    assert proxy["hostname"] == "localhost"
    assert proxy["port"] == "8157"  # FoxyProxy 8 keeps the port as a string
    assert proxy["proxyDNS"] is True
    assert proxy["exclude"] == []


def test_json_holds_the_same_patterns_as_the_xml(
    json_settings: dict, xml_proxy: ET.Element
) -> None:
    include = json_settings["data"][0]["include"]
    assert all(p["type"] == "wildcard" and p["active"] is True for p in include)
    assert [p["pattern"] for p in include] == EMR_PATTERNS
    assert [p["pattern"] for p in include] == [m.get("pattern") for m in xml_proxy.iter("match")]
    # FoxyProxy 8 refuses an include entry that lacks one of these keys.
    assert all(set(p) == {"type", "title", "pattern", "active"} for p in include)


@pytest.mark.parametrize("url", CLUSTER_URLS)
def test_cluster_addresses_go_through_the_tunnel(url: str, json_settings: dict) -> None:
    patterns = [p["pattern"] for p in json_settings["data"][0]["include"]]
    assert proxied(url, [foxyproxy8_wildcard_to_regex(p) for p in patterns])


@pytest.mark.parametrize("url", OTHER_URLS)
def test_ordinary_sites_go_direct(url: str, json_settings: dict) -> None:
    patterns = [p["pattern"] for p in json_settings["data"][0]["include"]]
    assert not proxied(url, [foxyproxy8_wildcard_to_regex(p) for p in patterns])


def test_legacy_xml_matching_agrees(xml_proxy: ET.Element) -> None:
    regexes = [legacy_wildcard_to_regex(m.get("pattern", "")) for m in xml_proxy.iter("match")]
    assert all(proxied(url, regexes) for url in CLUSTER_URLS)
    assert not any(proxied(url, regexes) for url in OTHER_URLS)


def test_wildcard_translation_follows_foxyproxy() -> None:
    assert foxyproxy8_wildcard_to_regex("*") == r"\S+"
    assert foxyproxy8_wildcard_to_regex("http://10.*") == r"http://10\..*"
    assert foxyproxy8_wildcard_to_regex("a?c") == "a.c"
    # '*://*.example.com' also covers the bare domain, as in FoxyProxy 8.
    regex = foxyproxy8_wildcard_to_regex("*://*.example.com/")
    assert re.search(regex, "https://example.com/")
    assert re.search(regex, "https://www.example.com/")
    assert not re.search(regex, "https://example.org/")
