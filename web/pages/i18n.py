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
        "board.title": "Bảng giám sát",
        "board.agents": "Điện thoại viên",
        "board.queues": "Hàng đợi",
        "board.productivity": "Năng suất hôm nay",
        "board.name": "Tên",
        "board.presence": "Trạng thái",
        "board.since": "Từ lúc",
        "board.calls": "Cuộc gọi",
        "board.conversations": "Hội thoại",
        "board.queue": "Hàng đợi",
        "board.waiting": "Đang chờ",
        "board.oldest": "Chờ lâu nhất từ",
        "board.answered": "Đã trả lời",
        "board.abandoned": "Bỏ cuộc",
        "board.service_level": "Mức phục vụ",
        "board.handled": "Đã xử lý",
        "board.talk": "Đàm thoại",
        "board.wrap_up": "Hoàn tất",
        "board.occupancy": "Tỷ lệ bận",
        "board.live": "Cập nhật trực tiếp",
        "board.role_only": "Bảng giám sát dành cho giám sát viên và quản trị tổ chức.",
        "presence.available": "Sẵn sàng",
        "presence.ringing": "Đang đổ chuông",
        "presence.on_call": "Đang gọi",
        "presence.wrap_up": "Hoàn tất cuộc gọi",
        "presence.break": "Tạm nghỉ",
        "presence.offline": "Ngoại tuyến",
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
        "board.title": "Supervisor board",
        "board.agents": "Agents",
        "board.queues": "Queues",
        "board.productivity": "Productivity today",
        "board.name": "Name",
        "board.presence": "Status",
        "board.since": "Since",
        "board.calls": "Calls",
        "board.conversations": "Conversations",
        "board.queue": "Queue",
        "board.waiting": "Waiting",
        "board.oldest": "Oldest waiting since",
        "board.answered": "Answered",
        "board.abandoned": "Abandoned",
        "board.service_level": "Service level",
        "board.handled": "Handled",
        "board.talk": "Talk",
        "board.wrap_up": "Wrap-up",
        "board.occupancy": "Occupancy",
        "board.live": "Live",
        "board.role_only": "The board is for supervisors and tenant admins.",
        "presence.available": "Available",
        "presence.ringing": "Ringing",
        "presence.on_call": "On a call",
        "presence.wrap_up": "Wrap-up",
        "presence.break": "On a break",
        "presence.offline": "Offline",
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
