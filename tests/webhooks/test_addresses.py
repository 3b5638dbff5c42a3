"""Which addresses a webhook may reach: public ones, unless the operator allows private."""

from __future__ import annotations

import pytest

from webhooks import UnsafeUrl, check_url, guarded_address

REFUSED = [
    ("http://127.0.0.1:9000/hook", "loopback"),
    ("http://localhost/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://10.1.2.3/hook", "private"),
    ("http://192.168.1.20/hook", "private"),
    ("http://172.16.0.9/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://100.100.100.200/latest/meta-data/", "not public"),  # Alibaba Cloud's metadata
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),  # an IPv4-mapped IPv6 address
    ("http://0.0.0.0/hook", "private"),  # "this host" is in the private ranges
    ("ftp://93.184.216.34/hook", "http:// or https://"),
    ("https://user:pw@93.184.216.34/hook", "no user or password"),
    ("https:///hook", "names no host"),
    ("https://93.184.216.34:99999/hook", "not a URL"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_urls_that_reach_no_public_address_are_refused(url: str, why: str) -> None:
    with pytest.raises(UnsafeUrl, match=why):
        check_url(url, allow_private=False)


def test_public_addresses_pass_and_private_ones_pass_when_allowed() -> None:
    assert check_url("https://93.184.216.34/hook", allow_private=False)
    assert check_url("https://[2606:2800:220:1:248:1893:25c8:1946]/", allow_private=False)
    assert check_url("http://127.0.0.1:9000/hook", allow_private=True)


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    def rebinding(_host: str, _port: int) -> list[str]:
        return ["93.184.216.34", "127.0.0.1"]

    with pytest.raises(UnsafeUrl, match=r"resolves to 127\.0\.0\.1, which is loopback"):
        guarded_address("hooks.example", 443, allow_private=False, resolve=rebinding)
    assert guarded_address("hooks.example", 443, allow_private=True, resolve=rebinding) == (
        "93.184.216.34"
    )
