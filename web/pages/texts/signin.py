"""Strings of the sign-in form added with its throttling (the form's others are in
web.pages.i18n)."""

VI: dict[str, str] = {
    "signin.throttled": "Đăng nhập sai quá nhiều lần; vui lòng thử lại sau {minutes} phút.",
    "signin.throttled_one": "Đăng nhập sai quá nhiều lần; vui lòng thử lại sau 1 phút.",
}

EN: dict[str, str] = {
    "signin.throttled": "Too many attempts; try again in {minutes} minutes.",
    "signin.throttled_one": "Too many attempts; try again in 1 minute.",
}
