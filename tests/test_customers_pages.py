"""Customer pages (CC8, CT11, CT12) on a real `cloudcc up`: search by anything a customer
is known by, the profile with its timeline, tickets and click-to-call, edits, and merging
a duplicate — each tenant's customers walled off from the other's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from uuid import UUID, uuid4

import httpx
import pytest
from helpers import api_headers, running_instance, wait_for
from test_signin import Site, signed_in

from deploy.natsserver import free_port
from domain.apps import DomainApps
from domain.vocabulary import Channel, Package

HANOI, SAIGON = "crm-hanoi", "crm-saigon"
PASSWORD = "mật khẩu khách hàng 2024"


@dataclass
class Desk:
    site: Site
    hoa: UUID  # the customer kept
    duplicate: UUID  # the same person, registered again through a chat
    chat: UUID  # the duplicate's conversation
    ticket: UUID  # the duplicate's ticket
    quiet: UUID  # a customer of Hanoi nobody touches
    saigons: UUID  # a customer of the other tenant, with Hoa's phone number


@pytest.fixture(scope="module")
def desk(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    data = tmp_path_factory.mktemp("customers")
    port = free_port()
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": nats_url})
    try:
        with running_instance(data, nats_url, port):
            url = f"http://127.0.0.1:{port}"
            api_headers(url, nats_url, HANOI)  # registers both tenants
            api_headers(url, nats_url, SAIGON)
            for login, name, role in (("an", "An Nguyễn", "agent"), ("lan", "Lan", "tenant_admin")):
                user = apps.agents.create_user(
                    HANOI, name, f"{login}@crm.vn", role, package=Package.CONTACT_CENTER
                )
                apps.agents.set_password(HANOI, user, PASSWORD)
            customers = apps.customers
            hoa = customers.register(
                HANOI, "Chị Hoa Trần", [("phone", "0912345678"), ("email", "hoa@example.vn")]
            )
            customers.set_attributes(HANOI, hoa, {"tags": "VIP, hay gọi"})
            duplicate = customers.register(HANOI, "Hoa T.", [("chat", "visitor-77")])
            chat = apps.conversations.start(HANOI, Channel.CHAT, duplicate, thread_key="s-77")
            apps.conversations.receive_message(HANOI, chat, "m-77", "Em là Hoa, hỏi về hoá đơn")
            ticket = apps.tickets.raise_ticket(
                HANOI, "Hoá đơn sai của Hoa", kind="complaint", customer_id=duplicate
            )
            quiet = customers.register(HANOI, "Ông Ba", [("phone", "0909000111")])
            saigons = customers.register(SAIGON, "Hoa Sài Gòn", [("phone", "0912345678")])
            yield Desk(
                Site(url, apps, data, nats_url), hoa, duplicate, chat, ticket, quiet, saigons
            )
    finally:
        apps.close()


def token(page: httpx.Response) -> str:
    found = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def user(desk: Desk, login: str = "an") -> AbstractContextManager[httpx.Client]:
    return signed_in(desk.site, HANOI, f"{login}@crm.vn", PASSWORD)


def found(http: httpx.Client, query: str, expected: UUID) -> httpx.Response:
    return wait_for(
        lambda: http.get(f"/t/{HANOI}/customers", params={"q": query, "lang": "en"}),
        lambda r: f'data-customer="{expected}"' in r.text,
    )


def test_customers_are_found_by_phone_email_name_and_tag_within_the_tenant(desk: Desk) -> None:
    with user(desk) as http:
        for query in ("0912 345 678", "+84912345678", "345678", "hoa@example", "tran", "vip"):
            answer = found(http, query, desk.hoa)
            assert answer.status_code == 200, answer.text
            assert f'data-customer="{desk.hoa}"' in answer.text, query
            # The other tenant's customer has the same number and name: never listed.
            assert str(desk.saigons) not in answer.text, query
            assert str(desk.quiet) not in answer.text, query
        assert "Chị Hoa Trần" in found(http, "VIP", desk.hoa).text
        nobody = http.get(f"/t/{HANOI}/customers", params={"q": "zzzz", "lang": "en"})
        assert nobody.status_code == 200 and "No customer found" in nobody.text
        too_long = http.get(f"/t/{HANOI}/customers", params={"q": "x" * 201, "lang": "en"})
        assert too_long.status_code == 400 and "too long" in too_long.text


def test_another_tenants_or_an_unknown_customer_is_not_found(desk: Desk) -> None:
    with user(desk) as http:
        for cid in (desk.saigons, uuid4(), "not-an-id"):
            answer = http.get(f"/t/{HANOI}/customers/{cid}", params={"lang": "en"})
            assert answer.status_code == 404, cid
            assert "This customer was not found." in answer.text
            assert "Hoa Sài Gòn" not in answer.text
        # Nor can it be merged in from here.
        page = http.get(f"/t/{HANOI}/customers/{desk.quiet}")
        merge = http.post(
            f"/t/{HANOI}/customers/{desk.quiet}/merge?lang=en",
            data={"_csrf_token": token(page), "duplicate": str(desk.saigons)},
        )
        assert merge.status_code == 404 and "This duplicate was not found." in merge.text
        # Another tenant's pages are not this user's at all.
        assert http.get(f"/t/{SAIGON}/customers/{desk.saigons}").status_code == 403


def test_the_profile_shows_contact_points_with_click_to_call_tags_and_history(desk: Desk) -> None:
    with user(desk) as http:
        profile = http.get(f"/t/{HANOI}/customers/{desk.hoa}", params={"lang": "en"})
        assert profile.status_code == 200, profile.text
        assert "Chị Hoa Trần" in profile.text and "hoa@example.vn" in profile.text
        assert '<span class="tag">VIP</span>' in profile.text
        assert '<span class="tag">hay gọi</span>' in profile.text
        dial = profile.text.split('id="phones"')[1].split("</ul>")[0]
        assert f'action="/t/{HANOI}/phone/dial"' in dial
        assert 'name="number" value="+84912345678"' in dial
        assert f'name="customer_id" value="{desk.hoa}"' in dial
        assert 'name="_csrf_token"' in dial
        assert "📞" in dial

    # A tenant admin has no phone (the phone route refuses them): the numbers, no buttons.
    with user(desk, "lan") as http:
        profile = http.get(f"/t/{HANOI}/customers/{desk.hoa}", params={"lang": "en"})
        assert profile.status_code == 200, profile.text
        dial = profile.text.split('id="phones"')[1].split("</ul>")[0]
        assert "+84912345678" in dial
        assert "/phone/dial" not in dial and "<form" not in dial and "📞" not in dial
        refused = http.post(
            f"/t/{HANOI}/phone/dial",
            data={"_csrf_token": token(profile), "number": "+84912345678"},
        )
        assert refused.status_code == 403

    with user(desk) as http:
        # The duplicate's own page: its conversation in the timeline, its ticket listed.
        theirs = wait_for(
            lambda: http.get(f"/t/{HANOI}/customers/{desk.duplicate}"),
            lambda r: f'data-source="{desk.chat}"' in r.text and str(desk.ticket) in r.text,
        )
        assert "Em là Hoa, hỏi về hoá đơn" in theirs.text
        assert f'href="/t/{HANOI}/tickets/{desk.ticket}"' in theirs.text
        assert f'href="/t/{HANOI}/inbox/{desk.chat}"' in theirs.text


def test_an_edit_is_saved_and_shown_after_the_redirect(desk: Desk) -> None:
    url = f"/t/{HANOI}/customers/{desk.quiet}"
    with user(desk, "lan") as http:  # a tenant admin may too
        page = http.get(url)
        fields = {
            "_csrf_token": token(page),
            "name": "Ông Ba Lê",
            "phones": "0909 000 111\n0977 123 456",
            "emails": "ba@example.vn",
            "tags": "đại lý, Hà Nội",
            "company": "Công ty Ba",
            "address": "",
            "language": "vi",
        }
        saved = http.post(f"{url}/edit", data=fields)
        assert saved.status_code == 303 and saved.headers["location"] == url
        shown = http.get(url).text
        assert "Ông Ba Lê" in shown and "+84977123456" in shown and "ba@example.vn" in shown
        assert '<span class="tag">đại lý</span>' in shown and "Công ty Ba" in shown
        got = desk.site.apps.customers.get(HANOI, desk.quiet)
        assert sorted(v for k, v in got["identities"]) == [
            "+84909000111",
            "+84977123456",
            "ba@example.vn",
        ]
        # The read model follows: found by the new tag and the new number.
        found(http, "đại lý", desk.quiet)
        found(http, "0977123456", desk.quiet)

        # A bad phone refuses the whole form: the page again, 400, nothing saved.
        bad = http.post(
            f"{url}/edit?lang=en", data={**fields, "name": "Renamed", "phones": "not a phone"}
        )
        assert bad.status_code == 400 and "A contact point is not valid" in bad.text
        assert desk.site.apps.customers.get(HANOI, desk.quiet)["name"] == "Ông Ba Lê"
        empty = http.post(f"{url}/edit?lang=en", data={**fields, "name": "  "})
        assert empty.status_code == 400 and "Not done" in empty.text
        # Without the CSRF token, nothing at all.
        forged = http.post(f"{url}/edit", data={k: v for k, v in fields.items() if k[0] != "_"})
        assert forged.status_code == 403


def test_merging_a_duplicate_moves_its_history_under_the_kept_customer(desk: Desk) -> None:
    url = f"/t/{HANOI}/customers/{desk.hoa}"
    with user(desk) as http:
        page = http.get(url)
        self_merge = http.post(
            f"{url}/merge?lang=en", data={"_csrf_token": token(page), "duplicate": str(desk.hoa)}
        )
        assert self_merge.status_code == 400 and "into itself" in self_merge.text
        junk = http.post(
            f"{url}/merge?lang=en", data={"_csrf_token": token(page), "duplicate": "junk"}
        )
        assert junk.status_code == 400

        merged = http.post(
            f"{url}/merge", data={"_csrf_token": token(page), "duplicate": str(desk.duplicate)}
        )
        assert merged.status_code == 303 and merged.headers["location"] == url
        kept = wait_for(
            lambda: http.get(url),
            lambda r: f'data-source="{desk.chat}"' in r.text and str(desk.ticket) in r.text,
        )
        assert "Em là Hoa, hỏi về hoá đơn" in kept.text  # the duplicate's conversation
        assert f'href="/t/{HANOI}/tickets/{desk.ticket}"' in kept.text  # and its ticket
        assert "chat: visitor-77" in kept.text.lower()  # and its identity
        # The duplicate's page leads to the kept customer; it is no longer found itself.
        gone = http.get(f"/t/{HANOI}/customers/{desk.duplicate}")
        assert gone.status_code == 303 and gone.headers["location"] == url
        search = found(http, "visitor-77", desk.hoa)
        assert f'data-customer="{desk.duplicate}"' not in search.text
