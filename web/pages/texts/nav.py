"""Strings of the navigation shared by every page."""

VI: dict[str, str] = {
    "nav.home": "Trang chính",
    "link.overview": "Tổng quan",
    "link.customers": "Khách hàng",
    "link.tickets": "Phiếu yêu cầu",
}

EN: dict[str, str] = {
    "nav.home": "Home",
    "link.overview": "Overview",
    "link.customers": "Customers",
    "link.tickets": "Tickets",
}
