"""A small Push Kit backend, as an app's server would have it: it signs its own
service-account JWT (PS256, from the key file Huawei, or Herald, hands out), sends
notifications through the Push Kit v3 REST API, retries what the service asks it to
retry, and forgets tokens the service says are invalid.

Nothing here knows about Herald's emulator: point `push_api_url` at Huawei and it works
the same. The tests in this folder point it at `herald serve --emulator`.
"""

import base64
import json
import time

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

# Push Kit's codes this backend acts on (reference: Push Kit v3 server API).
SUCCESS = "80000000"
PARTIAL_SUCCESS = "80100000"
ALL_TOKENS_INVALID = "80300007"
INTERNAL_ERROR = "81000001"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SendFailed(Exception):
    """The service refused the message for good, or kept failing past our retries."""

    def __init__(self, status, answer):
        super().__init__(f"HTTP {status}: {answer}")
        self.status = status
        self.answer = answer


class PushBackend:
    """Sends notifications for one Push Kit project.

    `now` returns the time in seconds (the JWT's `iat`); tests hand in the emulator's
    clock, production code leaves the default.
    """

    def __init__(self, key_file, push_api_url, now=time.time, retries=3, backoff_secs=0.05):
        with open(key_file) as f:
            self.key = json.load(f)
        self.url = push_api_url.rstrip("/")
        self.now = now
        self.retries = retries
        self.backoff_secs = backoff_secs
        self.private_key = serialization.load_pem_private_key(
            self.key["private_key"].encode(), password=None
        )
        self.http = requests.Session()
        # Tokens the service told us are gone: we stop sending to them.
        self.invalid_tokens = set()

    def jwt(self) -> str:
        """A service-account JWT: PS256, `kid` the key id, `iss` the sub-account."""
        iat = int(self.now())
        header = {"alg": "PS256", "typ": "JWT", "kid": self.key["key_id"]}
        claims = {
            "iss": self.key["sub_account"],
            "aud": self.key["token_uri"],
            "iat": iat,
            "exp": iat + 3600,
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self.private_key.sign(
            signing_input.encode(),
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            hashes.SHA256(),
        )
        return signing_input + "." + _b64url(signature)

    def send(self, message: dict, push_type: int = 0) -> dict:
        """POST `message` to messages:send; retry 5xx answers (81000001, a bare 503) with a
        short backoff; answer Push Kit's JSON. Tokens reported invalid are remembered."""
        endpoint = f"{self.url}/v3/{self.key['project_id']}/messages:send"
        for attempt in range(self.retries + 1):
            resp = self.http.post(
                endpoint,
                json=message,
                headers={
                    "Authorization": f"Bearer {self.jwt()}",
                    "push-type": str(push_type),
                },
                timeout=10,
            )
            if resp.status_code >= 500 and attempt < self.retries:
                time.sleep(self.backoff_secs * (attempt + 1))
                continue
            try:
                answer = resp.json()
            except ValueError:
                raise SendFailed(resp.status_code, resp.text) from None
            if answer.get("code") in (ALL_TOKENS_INVALID, PARTIAL_SUCCESS):
                self._forget_invalid(answer)
            if answer.get("code") not in (SUCCESS, PARTIAL_SUCCESS):
                raise SendFailed(resp.status_code, answer)
            return answer
        raise SendFailed(resp.status_code, resp.text)

    def _forget_invalid(self, answer):
        try:
            failures = json.loads(answer.get("msg", "{}"))
        except ValueError:
            return
        for tokens in failures.get("illegalTokens", {}).values():
            self.invalid_tokens.update(tokens)

    # The app's own business: what the tests exercise.

    def notify_order_shipped(self, token, order_id, category="EXPRESS", ttl=None):
        """Tell a customer their order shipped; a tap opens the order page."""
        if token in self.invalid_tokens:
            return None
        message = {
            "payload": {
                "notification": {
                    "category": category,
                    "title": "Your order has shipped",
                    "body": f"Order {order_id} is on its way.",
                    "notifyId": int(order_id),
                    "clickAction": {
                        "actionType": 1,
                        "action": "com.example.shop.ORDER",
                        "data": {"orderId": str(order_id)},
                    },
                }
            },
            "target": {"token": [token]},
        }
        if ttl is not None:
            message["pushOptions"] = {"ttl": f"{ttl}s"}
        return self.send(message)

    def promote(self, token, text):
        """A marketing message (Push Kit limits these per device per day)."""
        return self.send(
            {
                "payload": {
                    "notification": {
                        "category": "MARKETING",
                        "title": "Today only",
                        "body": text,
                        "clickAction": {"actionType": 0},
                    }
                },
                "target": {"token": [token]},
            }
        )
