"""Every string a page shows, in Vietnamese (the default, the brochure's language) and
English. A key missing from one language falls back to English; a unit test checks that
both dictionaries have the same keys, so that never happens unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"
FALLBACK_LANGUAGE = "en"

MESSAGES: Mapping[str, Mapping[str, str]] = {
    "vi": {
        "app.name": "cloudcc",
        "lang.vi": "Tiếng Việt",
        "lang.en": "English",
        "signin.title": "Đăng nhập",
        "signin.organisation": "Tổ chức",
        "signin.organisation_hint": "Mã tổ chức của bạn; nhà vận hành dùng “_”",
        "signin.login": "Tên đăng nhập",
        "signin.password": "Mật khẩu",
        "signin.submit": "Đăng nhập",
        "signin.failed": "Không đăng nhập được: tổ chức, tên đăng nhập hoặc mật khẩu không đúng.",
        "signout.submit": "Đăng xuất",
        "home.title": "Trang chính",
        "home.hello": "Xin chào {name}",
        "home.role": "Vai trò",
        "home.organisation": "Tổ chức",
        "home.next": "Dành cho bạn",
        "role.operator": "Nhà vận hành",
        "role.tenant_admin": "Quản trị tổ chức",
        "role.supervisor": "Giám sát viên",
        "role.agent": "Điện thoại viên",
        "link.inbox": "Hộp thư hội thoại",
        "link.board": "Bảng giám sát",
        "link.settings": "Cài đặt tổ chức",
        "link.tenants": "Các tổ chức",
        "link.soon": "sắp có",
        "forbidden.title": "Không có quyền truy cập",
        "forbidden.message": "Trang này thuộc về một tổ chức khác.",
        "forbidden.back": "Về trang của bạn",
    },
    "en": {
        "app.name": "cloudcc",
        "lang.vi": "Tiếng Việt",
        "lang.en": "English",
        "signin.title": "Sign in",
        "signin.organisation": "Organisation",
        "signin.organisation_hint": "Your organisation's id; operators use “_”",
        "signin.login": "Login",
        "signin.password": "Password",
        "signin.submit": "Sign in",
        "signin.failed": "Could not sign in: the organisation, login or password is wrong.",
        "signout.submit": "Sign out",
        "home.title": "Home",
        "home.hello": "Hello {name}",
        "home.role": "Role",
        "home.organisation": "Organisation",
        "home.next": "For you",
        "role.operator": "Operator",
        "role.tenant_admin": "Tenant admin",
        "role.supervisor": "Supervisor",
        "role.agent": "Agent",
        "link.inbox": "Conversation inbox",
        "link.board": "Supervisor board",
        "link.settings": "Organisation settings",
        "link.tenants": "Organisations",
        "link.soon": "coming soon",
        "forbidden.title": "Access denied",
        "forbidden.message": "This page belongs to another organisation.",
        "forbidden.back": "Back to your pages",
    },
}


def language(value: str | None) -> str | None:
    """`value` if it is a language the pages speak, else None."""
    return value if value in LANGUAGES else None


def translate(lang: str, key: str, **values: Any) -> str:
    """The text of `key` in `lang` (English if that language lacks it), with `{name}`
    placeholders filled. An unknown key shows itself, so a slip is visible, not blank."""
    text = MESSAGES.get(lang, {}).get(key) or MESSAGES[FALLBACK_LANGUAGE].get(key, key)
    return text.format(**values) if values else text


def translator(lang: str) -> Callable[..., str]:
    """`t(key, **values)` in one language, for a template."""
    return lambda key, **values: translate(lang, key, **values)
