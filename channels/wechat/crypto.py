"""WeChat's message encryption (安全模式 and 兼容模式): the callback body's `Encrypt` opened.

The account's EncodingAESKey is 43 characters of base64; with "=" added it decodes to the
32-byte AES-256 key, whose first 16 bytes are the CBC IV. The plaintext is 16 random bytes,
the XML's length as 4 bytes big-endian, the XML, then the account's appid, padded PKCS#7
style to a multiple of 32 bytes. `msg_signature` is the sha1 of the sorted, concatenated
[token, timestamp, nonce, Encrypt]. AES itself comes from `cryptography`; the framing is
here, every malformed part a `Refused` saying which check failed (never the key, never the
content).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from core import i18n

__all__ = [
    "AES_KEY_ENV",
    "BadAesKey",
    "Refused",
    "decrypt",
    "msg_signature",
    "msg_signature_ok",
    "parse_aes_key",
]

AES_KEY_ENV = "MCH_WECHAT_ENCODING_AES_KEY"
KEY_CHARS = 43
PAD_BLOCK = 32
_RANDOM, _LENGTH = 16, 4

i18n.register(
    {
        "wx_aes_key_length": (
            "{env} 应为 {want} 个字符（公众号服务器配置中的 EncodingAESKey），现为 {have} 个",
            "{env} must be {want} characters (the EncodingAESKey of the account's server "
            "configuration); it has {have}",
        ),
        "wx_aes_key_without_appid": (
            "已设置 {env}，但未设置 MCH_WECHAT_APPID：加密的回调消息将全部被拒绝",
            "{env} is set but MCH_WECHAT_APPID is not: every encrypted callback would be refused",
        ),
        "wx_aes_key_base64": (
            "{env} 不是有效的 EncodingAESKey：只能包含字母、数字、+ 和 /",
            "{env} is not an EncodingAESKey: letters, digits, + and / only",
        ),
    }
)


class BadAesKey(ValueError):
    """The EncodingAESKey is not one WeChat issues; the text never quotes it."""


class Refused(ValueError):
    """An encrypted body that does not open; `reason` is a short code for logs and tests."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def parse_aes_key(text: str) -> bytes:
    """The 32-byte AES key of an EncodingAESKey (43 base64 characters)."""
    text = text.strip()
    if len(text) != KEY_CHARS:
        raise BadAesKey(i18n.t("wx_aes_key_length", env=AES_KEY_ENV, want=KEY_CHARS, have=len(text)))
    try:
        key = base64.b64decode(text + "=", validate=True)
    except binascii.Error:
        raise BadAesKey(i18n.t("wx_aes_key_base64", env=AES_KEY_ENV)) from None
    return key


def msg_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypt])).encode("utf-8")).hexdigest()


def msg_signature_ok(token: str, signature: str, timestamp: str, nonce: str, encrypt: str) -> bool:
    if not (token and signature and timestamp and nonce and encrypt):
        return False
    return hmac.compare_digest(msg_signature(token, timestamp, nonce, encrypt), signature.lower())


def decrypt(key: bytes, encrypt: str, appid: str) -> bytes:
    """The XML inside `Encrypt`, once its padding, length and appid all check out."""
    try:
        data = base64.b64decode(encrypt, validate=True)
    except binascii.Error:
        raise Refused("not_base64") from None
    if not data or len(data) % 16:
        raise Refused("bad_length")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= PAD_BLOCK or plain[-pad:] != bytes([pad]) * pad:
        raise Refused("bad_padding")
    plain = plain[:-pad]
    if len(plain) < _RANDOM + _LENGTH:
        raise Refused("bad_length")
    size = int.from_bytes(plain[_RANDOM : _RANDOM + _LENGTH], "big")
    start = _RANDOM + _LENGTH
    if start + size > len(plain):
        raise Refused("bad_length")
    xml, sender = plain[start : start + size], plain[start + size :]
    if not appid or not hmac.compare_digest(sender, appid.encode("utf-8")):
        raise Refused("wrong_appid")
    return xml
