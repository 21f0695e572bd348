"""The backend's notification code against `herald serve --emulator`: what each device
received, what the user did, which receipts arrived, and the cases the real service
cannot be made to produce on demand (quota reached, TTL expired, vendor errors)."""

import http.server
import json
import threading
import time

import pytest

from backend import SendFailed


def only(items):
    assert len(items) == 1, items
    return items[0]


def test_a_shipped_order_is_shown(emulator, backend):
    device = emulator.create_device()
    answer = backend.notify_order_shipped(device["token"], 42)
    assert answer["code"] == "80000000"
    item = only(emulator.inbox(device))
    assert item["state"] == "shown"
    assert item["receipt"] == 0
    assert item["request_id"] == answer["requestId"]
    assert item["notify_id"] == 42
    assert item["category"] == "EXPRESS"
    assert item["payload"]["notification"]["title"] == "Your order has shipped"


def test_a_tap_opens_the_order_page_with_the_want(emulator, backend):
    device = emulator.create_device(
        abilities=[{"name": "OrderAbility", "actions": ["com.example.shop.ORDER"]}]
    )
    backend.notify_order_shipped(device["token"], 7)
    opened = emulator.act(device, {"action": "click", "notify_id": 7})
    assert opened["ability"] == "OrderAbility"
    assert opened["callback"] == "onCreate"
    assert opened["want"]["parameters"] == {"orderId": "7"}
    assert only(emulator.inbox(device))["state"] == "clicked"


def test_switched_off_notifications_are_suppressed_with_receipt_6(emulator, backend):
    device = emulator.create_device(permission="deny")
    backend.notify_order_shipped(device["token"], 1)
    item = only(emulator.inbox(device))
    assert (item["state"], item["receipt"]) == ("suppressed", 6)
    # The user turns notifications on in the settings.
    emulator.act(device, {"action": "settings", "enabled": True})
    backend.notify_order_shipped(device["token"], 2)
    assert emulator.inbox(device)[1]["state"] == "shown"


def test_the_marketing_quota_is_reached_with_256_and_resets_the_next_day(emulator, backend):
    device = emulator.create_device()
    for text in ("one", "two", "three"):
        backend.promote(device["token"], text)
    assert [(i["state"], i["receipt"]) for i in emulator.inbox(device)] == [
        ("shown", 0),
        ("shown", 0),
        ("dropped", 256),
    ]
    emulator.advance(24 * 3600)
    backend.promote(device["token"], "tomorrow")
    assert emulator.inbox(device)[3]["state"] == "shown"


def test_an_offline_device_misses_a_message_whose_ttl_ends(emulator, backend):
    device = emulator.create_device(online=False)
    backend.notify_order_shipped(device["token"], 5, ttl=300)
    assert only(emulator.inbox(device))["state"] == "queued"
    emulator.advance(301)
    item = only(emulator.inbox(device))
    assert (item["state"], item["receipt"]) == ("expired", 14)
    # Back online, nothing more arrives.
    emulator.act(device, {"action": "online", "online": True})
    assert only(emulator.inbox(device))["state"] == "expired"


def test_a_vendor_error_is_retried(emulator, backend):
    device = emulator.create_device()
    emulator.fault(http_status=503, count=1)
    emulator.fault(code="81000001", count=1)
    answer = backend.notify_order_shipped(device["token"], 9)
    assert answer["code"] == "80000000"
    # Two failed attempts stored nothing; the third delivered once.
    assert only(emulator.inbox(device))["state"] == "shown"


def test_an_invalid_token_is_cleaned_up(emulator, backend):
    device = emulator.create_device()
    emulator.fault(code="80300007", count=1, token=device["token"])
    with pytest.raises(SendFailed):
        backend.notify_order_shipped(device["token"], 3)
    assert device["token"] in backend.invalid_tokens
    assert backend.notify_order_shipped(device["token"], 4) is None
    assert emulator.inbox(device) == []


class _Receipts(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receipts.received.append(json.loads(body))
        answer = b'{"code":"0","message":"success"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def test_the_receipt_of_a_suppressed_notification_reaches_the_backend(emulator, backend):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receipts)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    project = emulator.bootstrap["project_id"]
    resp = emulator.http.post(
        f"{emulator.url}/api/v1/projects/{project}/receipts",
        json={"url": f"http://127.0.0.1:{server.server_address[1]}/receipts"},
        timeout=10,
    )
    resp.raise_for_status()
    try:
        device = emulator.create_device(permission="deny")
        backend.notify_order_shipped(device["token"], 11)
        deadline = time.monotonic() + 10
        while not emulator.receipts() and time.monotonic() < deadline:
            time.sleep(0.05)
        attempt = only(emulator.receipts())
        assert (attempt["status"], attempt["success"]) == (200, True)
        status = only(attempt["body"]["statuses"])
        assert status["token"] == device["token"]
        assert status["deliveryStatus"]["result"] == 6
        assert _Receipts.received[-1] == attempt["body"]
    finally:
        server.shutdown()
        emulator.http.delete(f"{emulator.url}/api/v1/receipts/{resp.json()['receiptId']}", timeout=10)


def test_a_reset_takes_milliseconds(emulator):
    assert emulator.reset_ms < 500, emulator.reset_ms
